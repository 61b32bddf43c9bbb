"""What a message to the bot means and what the bot answers, for every platform at once.

A front end translates its platform's event into a call here (who, what text or which
options, which files, where) and renders what comes back (private or public, through
its ``Style``). Every decision a person can notice is made in this one place: help or
credits or an admin command or an edit; which attached file is the input and the
refusal when none can be; the texts of every answer. The service behind it keeps the
rules about money and jobs.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

from bot import i18n
from bot.chat import texts
from bot.chat.admin import MENTION, AdminCommands, PlatformAdmin, same_space
from bot.chat.cancel_answers import Outcome
from bot.chat.commands import (
    CancelCommand,
    CreditsCommand,
    HelpCommand,
    build_options,
    options_profile,
    parse_command,
    parse_history,
    upscale_options,
    validate_prompt,
)
from bot.chat.home import HOME_EDITS, HomeAdmin, HomeScreen, home_edit
from bot.chat.presets import (
    DELETE,
    EDIT,
    REROLL,
    UPSCALE,
    Preset,
    ResultButton,
    ResultLayout,
)
from bot.chat.texts import Style
from bot.domain import (
    AttachmentSource,
    EditOptions,
    EditRequest,
    Job,
    JobState,
    RequestContext,
    UserRef,
)
from bot.errors import KontextError, UserInputError
from bot.i18n import _
from bot.jobs.service import KontextService


async def _not_platform_admin() -> bool:
    return False


@dataclass(frozen=True)
class Said:
    """An answer for the person who asked, shown to them alone where the platform can.
    ``mistake``: the request could not be taken as written (the text says why)."""

    text: str
    mistake: bool = False


@dataclass(frozen=True)
class Edit:
    """Go ahead: an edit to submit with these inputs (already chosen and checked)."""

    prompt: str
    options: EditOptions
    inputs: tuple[AttachmentSource, ...]
    # Files beside the images that are no image: left out, and named when queued.
    left_out: tuple[str, ...] = ()


@dataclass(frozen=True)
class Submitted:
    """How a submission went: ``accepted`` with the queued text, or refused with why."""

    accepted: bool
    text: str
    job_id: str | None = None
    duplicate: bool = False


@dataclass(frozen=True)
class HistoryAnswer:
    """A user's recent jobs as text, and the jobs whose result can be edited again from
    the answer (the platform puts its buttons on those, numbered as the text marks them)."""

    text: str
    buttons: tuple[str, ...] = ()
    refused: bool = False


@dataclass(frozen=True)
class NextEdit:
    """Edit again: ask for the next prompt with these inputs (the result first, then
    the references of the edit it continues), this model preselected."""

    inputs: tuple[AttachmentSource, ...]
    model: str | None


# A history answer carries buttons for at most this many jobs: two buttons each in an
# action row of its own stays within Discord's 5 rows of a message.
HISTORY_BUTTON_JOBS = 5
HISTORY_JOBS = 10


class Conversation(AdminCommands):
    def __init__(self, service: KontextService, style: Style) -> None:
        self.service = service
        self.style = style

    # -- the language of the answers (bot.i18n; issue 28) ---------------------------------------

    async def speak(self, user: UserRef, *locales: str | None) -> str:
        """Decide the language of everything said to ``user`` from here on in this task
        (and of the job a request of theirs becomes), and speak it: the language an
        admin set for their server or workspace, else the first of the platform's
        ``locales`` (best first: a Discord user's client language, then the server's;
        a Slack user's locale; the terminal's ``LANG``) the bot has texts for, else
        ``[i18n] default``. A locale it has no texts for is passed over, never an
        error. Returns the language's code."""
        try:
            chosen = await self.service.language_of(user)
        except Exception:
            chosen = None
        i18n.remember(locales)
        code = chosen or i18n.choose(locales, self.service.default_language)
        i18n.activate(code)
        return i18n.current_code()

    # -- information, free ---------------------------------------------------------------------

    def help(self) -> str:
        return texts.help_text(
            self.style,
            self.service.cost_per_image,
            self.service.models,
            self.service.presets.names,
            max_variations=self.service.max_variations,
        )

    def welcome(self) -> str:
        """The greeting posted once when the bot joins a server (``discord.welcome``)."""
        return texts.welcome_text(self.style, self.service.cost_per_image)

    async def credits(self, user: UserRef, context: RequestContext | None = None) -> str:
        return texts.credits_text(self.style, await self.service.credits(user, context))

    # -- cancel, free (issue 26) ----------------------------------------------------------------

    async def cancel(
        self,
        asker: UserRef,
        job_id: str | None = None,
        platform_admin: PlatformAdmin = _not_platform_admin,
    ) -> str:
        """Cancel ``job_id`` (a Cancel button) or the asker's newest unfinished job
        (``/kontext cancel``); the answer is for the asker alone. The platform is asked
        whether the asker is its admin only for someone else's job."""
        answer = await self.service.cancel(asker, job_id)
        if answer.outcome == Outcome.NOT_YOURS and await self._asks(asker, platform_admin):
            answer = await self.service.cancel(asker, job_id, platform_admin=True)
        return texts.cancel_text(answer)

    # -- history, free (issue 19) ---------------------------------------------------------------

    async def history(
        self,
        asker: UserRef,
        whom: UserRef | None = None,
        platform_admin: PlatformAdmin = _not_platform_admin,
        *,
        buttons: bool = False,
    ) -> HistoryAnswer:
        """The last jobs of ``whom`` (the asker when None): one's own for everyone,
        someone else's for admins; a refusal says so. ``buttons``: the platform can put
        Edit again / Re-roll on the answer; they go on the newest delivered results
        still on the platform (at most ``HISTORY_BUTTON_JOBS``)."""
        user = whom or asker
        own = user == asker
        is_platform_admin = False if own else await self._asks(asker, platform_admin)
        try:
            jobs = await self.service.job_history(
                asker, user, limit=HISTORY_JOBS, platform_admin=is_platform_admin
            )
        except UserInputError as exc:
            return HistoryAnswer(exc.user_message, refused=True)
        chosen: tuple[str, ...] = ()
        if buttons:
            chosen = tuple(
                job.id for job in jobs if job.state == JobState.SUCCEEDED and job.delivered
            )[:HISTORY_BUTTON_JOBS]
        text = texts.history_text(self.style, user.user, jobs, own=own, numbered=chosen)
        return HistoryAnswer(text, chosen)

    # -- the home screen (Slack's App Home, issue 28), free ----------------------------------

    async def home(
        self,
        user: UserRef,
        platform_admin: PlatformAdmin = _not_platform_admin,
        context: RequestContext | None = None,
    ) -> HomeScreen:
        """What ``user``'s home screen shows: their credits, their last edits (Re-roll
        and Edit again on delivered results), a friendly start when they have none, and
        for admins the shared budget, today's spend and the dashboard's address."""
        status = await self.service.credits(user, context)
        jobs = await self.service.job_history(user, user, limit=HOME_EDITS)
        edits = tuple(home_edit(job, texts.job_line(self.style, job)) for job in jobs)
        empty = None if edits else texts.home_empty_text(self.style, self.service.cost_per_image)
        admin = None
        if self.service.is_admin(user, platform_admin=await self._asks(user, platform_admin)):
            budget = await self.service.budget()
            admin = HomeAdmin(
                texts.budget_text(self.style, budget),
                budget,
                self.service.dashboard_url or None,
            )
        return HomeScreen(texts.credits_text(self.style, status), edits, empty, admin)

    # -- reading a request ---------------------------------------------------------------------

    async def read(
        self,
        user: UserRef,
        text: str,
        *,
        files: Sequence[AttachmentSource] = (),
        context: RequestContext | None = None,
        bot_mentions: Sequence[str] = (),
        platform_admin: PlatformAdmin = _not_platform_admin,
        image_follows: bool = False,
        model: str | None = None,
    ) -> Said | Edit:
        """A typed request in the text grammar: help, credits, an admin command, or an
        edit of the first acceptable image among ``files``. Mistakes come back as
        ``Said`` with what to write instead; nothing is stored or charged for them.
        ``image_follows``: the image comes later (Slack's slash command opens a form
        to attach it), so options that need one are allowed. ``model``: the model of
        the job this edit continues (Edit again), used unless the text names one."""
        try:
            asked = parse_history(text, bot_mentions)
            if asked is not None:
                whom = _whom(user, asked.whom)
                answer = await self.history(user, whom, platform_admin)
                return Said(answer.text, mistake=answer.refused)
            admin = await self._admin_command(user, text.strip(), platform_admin)
            if admin is not None:
                return Said(admin)
            inputs = self.service.pick_inputs(files)
            parsed = parse_command(
                text,
                has_image=bool(inputs) or image_follows,
                capabilities=self.service.capabilities,
                bot_mentions=bot_mentions,
                models=self.service.models,
                max_count=self.service.max_variations,
            )
            if isinstance(parsed, HelpCommand):
                return Said(self.help())
            if isinstance(parsed, CreditsCommand):
                return Said(await self.credits(user, context))
            if isinstance(parsed, CancelCommand):
                return Said(await self.cancel(user, platform_admin=platform_admin))
            options = parsed.options
            if options.model is None and model is not None:
                options = replace(options, model=model)
            prompt = parsed.prompt
            if parsed.preset is not None:
                prompt, options = self.with_preset(
                    parsed.preset, prompt, options, has_image=bool(inputs) or image_follows
                )
            return Edit(prompt, options, inputs, self.service.left_out(files))
        except UserInputError as exc:
            return Said(exc.user_message, mistake=True)

    async def read_options(
        self,
        user: UserRef,
        prompt: str,
        *,
        files: Sequence[AttachmentSource] = (),
        context: RequestContext | None = None,
        aspect_ratio: str | None = None,
        seed: int | None = None,
        output_format: str | None = None,
        upsample: bool = False,
        model: str | None = None,
        resolution: int | None = None,
        preset: str | None = None,
        count: int | None = None,
        upscale: int | None = None,
    ) -> Said | Edit:
        """A request whose options came as the platform's own fields (a slash command's
        options, a modal): a prompt of just ``help`` or ``credits`` answers as those
        commands do, free, instead of becoming a paid edit of that word. ``upscale``:
        an upscale at that scale (no prompt needed)."""
        word = prompt.strip().lower()
        if word == "help":
            return Said(self.help())
        if word in ("credits", "balance"):
            return Said(await self.credits(user, context))
        if word == "history":
            return Said((await self.history(user)).text)
        if word == "cancel":
            return Said(await self.cancel(user))
        try:
            inputs = self.service.pick_inputs(files)
            options = build_options(
                has_image=bool(inputs),
                capabilities=self.service.capabilities,
                aspect_ratio=aspect_ratio,
                seed=seed,
                output_format=output_format,
                upsample=upsample,
                model=model,
                models=self.service.models,
                resolution=resolution,
                count=count,
                max_count=self.service.max_variations,
                upscale=upscale,
            )
            if preset:
                prompt, options = self.with_preset(preset, prompt, options, has_image=bool(inputs))
            if options.upscale is not None:
                return Edit(" ".join(prompt.split()), options, inputs, self.service.left_out(files))
            validate_prompt(
                prompt,
                self.service.capabilities,
                options_profile(self.service.capabilities, self.service.models, options.model),
            )
        except UserInputError as exc:
            return Said(exc.user_message, mistake=True)
        return Edit(" ".join(prompt.split()), options, inputs, self.service.left_out(files))

    # -- presets (issue 27) --------------------------------------------------------------------

    def preset(self, name: str) -> Preset:
        """The preset of that name, or a free refusal that lists the ones there are."""
        found = self.service.presets.get(name)
        if found is None:
            raise UserInputError(texts.preset_unknown(name, self.service.presets.names))
        return found

    def preset_choices(self) -> list[tuple[str, str]]:
        """(name, label in the language in force) of every preset, for a platform's
        choice list or select."""
        return [(p.name, p.shown_label()) for p in self.service.presets]

    def with_preset(
        self, name: str, words: str, options: EditOptions, *, has_image: bool
    ) -> tuple[str, EditOptions]:
        """A preset expanded: its template around the user's words, its aspect ratio and
        model unless the user chose their own, checked as if typed (a refusal is free).
        The template stays in English: it is the model's instruction, not an answer."""
        chosen = self.preset(name)
        if not has_image:
            raise UserInputError(_(texts.PRESET_NEEDS_IMAGE))
        checked = build_options(
            has_image=has_image,
            capabilities=self.service.capabilities,
            aspect_ratio=options.aspect_ratio or chosen.aspect_ratio,
            seed=options.seed,
            output_format=options.output_format,
            upsample=options.upsample,
            safety=options.safety,
            model=options.model or chosen.model,
            models=self.service.models,
            resolution=options.resolution,
            # ``--n`` with a preset: that many variations of the preset's edit.
            count=options.count,
            max_count=self.service.max_variations,
        )
        prompt = validate_prompt(
            chosen.expand(words),
            self.service.capabilities,
            options_profile(self.service.capabilities, self.service.models, checked.model),
        )
        return prompt, checked

    async def apply_preset(
        self, job_id: str, name: str, shown: AttachmentSource | None
    ) -> Edit | Said:
        """A preset's button (or the More… select) on a result: that result is the image
        edited, with the references of the edit it continues, the preset's instruction as
        the prompt, the result's options under the preset's; the one who clicks pays.
        The vary presets pick a new seed; the others keep the result's."""
        job, source = await self._result_image(job_id, shown)
        if job is None:
            return Said(_(texts.REROLL_GONE), mistake=True)
        if source is None:
            return Said(_(texts.RESULT_IMAGE_GONE), mistake=True)
        preset = self.service.presets.get(name)
        if preset is None:
            return Said(_(texts.PRESET_GONE), mistake=True)
        base = replace(
            job.options,
            # The result's own ratio is the input's now; the preset's, if any, applies.
            aspect_ratio=None,
            seed=None if preset.new_seed else job.seed,
            # The preset's own model, else the one of the result it edits.
            model=preset.model or job.options.model,
        )
        try:
            prompt, options = self.with_preset(preset.name, "", base, has_image=True)
        except UserInputError as exc:
            return Said(exc.user_message, mistake=True)
        return Edit(prompt, options, tuple(self.edit_again_inputs(source, job)))

    def _upscaler(self) -> str | None:
        """The upscale model a result's Upscale button uses (``kind = "upscale"``);
        without one the button is not shown even where ``[results] buttons`` lists it."""
        upscaler = self.service.models.upscaler()
        return upscaler.name if upscaler is not None else None

    def result_layout(self) -> ResultLayout:
        """A result's buttons, as ``[results] buttons`` lists them: the built-in ones
        and the presets' (Upscale only when an upscale model is served), and the More…
        select with every preset. The platform only lays them out, translating the labels
        when it makes the message. What a click costs (the model's price) is said in the
        acknowledgement, as for any edit."""
        buttons: list[ResultButton] = []
        built_in = {
            REROLL: ResultButton(REROLL, texts.REROLL_LABEL, "🎲"),
            EDIT: ResultButton(EDIT, texts.EDIT_LABEL, "✏️"),
            UPSCALE: ResultButton(UPSCALE, texts.UPSCALE_LABEL, "🔎"),
            DELETE: ResultButton(DELETE, texts.DELETE_LABEL, "🗑️"),
        }
        for name in self.service.result_buttons:
            if name == UPSCALE and self._upscaler() is None:
                continue
            if name in built_in:
                buttons.append(built_in[name])
                continue
            found = self.service.presets.get(name)
            if found is not None:
                buttons.append(
                    ResultButton(
                        "preset",
                        found.label,
                        found.emoji,
                        found.name,
                        translated=found.translated,
                    )
                )
        return ResultLayout(tuple(buttons), tuple(self.service.presets))

    def message_files(
        self,
        own: Sequence[AttachmentSource],
        replied: AttachmentSource | None,
        *,
        replied_is_result: bool,
    ) -> list[AttachmentSource]:
        """The files a message's edit reads, in order. A reply to the bot's result
        continues that edit: the result first, then the reply's own files as references
        (issue 26). A reply to anyone else's image uses the reply's own files, or the
        replied image when the reply has none. Where no configured model takes more
        than one image, a reply's own image is the one edited, as before several images
        were possible (the result first would only earn a refusal)."""
        if replied is None:
            return list(own)
        if not own or (replied_is_result and self.takes_several()):
            return [replied, *own]
        return list(own)

    def takes_several(self) -> bool:
        """Whether any configured model takes more than one image: only then does a
        front end look for a previous result beside a message's own files."""
        return self.service.models.max_images > 1

    def edit_again_inputs(
        self, result: AttachmentSource, job: Job | None
    ) -> list[AttachmentSource]:
        """Edit again continues an edit: its result is the image edited now, and the
        references of the edit it continues stay, in their order (issue 26)."""
        return [result, *(job.attachments[1:] if job is not None else ())]

    def inputs_of_message(
        self, files: Sequence[AttachmentSource]
    ) -> Said | tuple[AttachmentSource, ...]:
        """The images of a message someone chose to edit (a message shortcut or menu),
        every one in order: a message without one, or with only files that are no
        image, is refused."""
        if not files:
            return Said(_("That message has no image to edit."), mistake=True)
        try:
            return self.service.pick_inputs(files)
        except UserInputError as exc:
            return Said(exc.user_message, mistake=True)

    # -- submitting ----------------------------------------------------------------------------

    def check(self, request: EditRequest) -> Said | None:
        """The checks that need no database (prompt, declared type and size), so a front
        end can refuse at once, before it answers the platform at all."""
        try:
            self.service.check(request)
        except UserInputError as exc:
            return Said(exc.user_message, mistake=True)
        return None

    async def submit(self, request: EditRequest) -> Submitted:
        """Reserve and queue. A refusal (quota, pause, bad input, shutting down) costs
        nothing and says why; an accepted request says its place and its seed."""
        try:
            ack = await self.service.submit(request)
        except KontextError as exc:
            return Submitted(accepted=False, text=exc.user_message)
        text = texts.queued_text(self.style, ack)
        if request.left_out:
            text += texts.left_out_note(request.left_out)
        return Submitted(
            accepted=True,
            text=text,
            job_id=ack.job.id,
            duplicate=ack.duplicate,
        )

    # -- what a result's buttons mean (Re-roll, Edit again, Delete) ----------------------------
    # The buttons are pressed long after the edit, on the result or on a history answer:
    # each starts from the stored job. The platform only shows the answer.

    async def reroll(self, job_id: str) -> Edit | Said:
        """Same inputs, prompt and options, a new seed. The seed is left to the service,
        which picks every seed the user did not give (so a re-roll's is as unpredictable
        as a first edit's, from one generator); the one who clicks pays."""
        job = await self.service.job(job_id)
        if job is None:
            return Said(_(texts.REROLL_GONE), mistake=True)
        return Edit(job.prompt, replace(job.options, seed=None), tuple(job.attachments))

    async def edit_again(self, job_id: str, shown: AttachmentSource | None) -> NextEdit | Said:
        """Multi-turn editing: the result becomes the input of the next edit, which keeps
        the model of the one it continues; the prompt is the user's to write. ``shown``
        is the image on the message the button is on; from a history answer (none) the
        input is the result where its delivery recorded it."""
        job, source = await self._result_image(job_id, shown)
        if source is None:
            return Said(_(texts.RESULT_IMAGE_GONE), mistake=True)
        inputs = tuple(self.edit_again_inputs(source, job))
        # An upscale's model is an upscaler: editing its result goes to the default model.
        model = job.options.model if job is not None and job.options.upscale is None else None
        return NextEdit(inputs, model)

    async def _result_image(
        self, job_id: str, shown: AttachmentSource | None
    ) -> tuple[Job | None, AttachmentSource | None]:
        """A result's job and its image: the one on the message the button is on
        (``shown``), else where the job's delivery recorded it (a history answer, the
        Home tab); None when neither is known."""
        job = await self.service.job(job_id)
        if shown is not None or job is None or not job.delivered:
            return job, shown
        image = job.delivered.get("image")
        return job, AttachmentSource.from_json(image) if isinstance(image, Mapping) else None

    async def upscale(
        self, job_id: str, shown: AttachmentSource | None = None, scale: int | None = None
    ) -> Edit | Said:
        """A result's Upscale button (and any front end's way to upscale a stored
        result): an upscale job whose input is that result, at ``scale`` or the
        upscaler's smallest. ``shown`` is the image on the message the button is on;
        without it, where the result's delivery recorded it. The one who clicks pays,
        as for a re-roll; submitted like any edit (``submit``)."""
        models = self.service.models
        upscaler = models.upscaler()
        if upscaler is None:
            return Said(_(texts.NO_UPSCALER), mistake=True)
        source = (await self._result_image(job_id, shown))[1]
        if source is None:
            return Said(_(texts.RESULT_IMAGE_GONE), mistake=True)
        chosen = scale if scale is not None else upscaler.scales[0]
        try:
            options = upscale_options(
                has_image=True, scale=chosen, model=upscaler.name, models=models
            )
        except UserInputError as exc:
            return Said(exc.user_message, mistake=True)
        return Edit("", options, (source,))

    async def may_delete(
        self,
        user: UserRef,
        job_id: str,
        platform_admin: PlatformAdmin = _not_platform_admin,
    ) -> Said | None:
        """Who may delete a posted result: the person who asked for it (the same user
        id on the platform) or an admin. None: go ahead; else the refusal to show."""
        job = await self.service.job(job_id)
        if job is not None and job.user.platform == user.platform and job.user.user == user.user:
            return None
        if self.service.is_admin(user, platform_admin=await platform_admin()):
            return None
        return Said(_(texts.DELETE_NOT_YOURS), mistake=True)

    async def deleted(self, job_id: str) -> None:
        """The posted result was deleted: history no longer links to it nor offers its
        buttons."""
        await self.service.forget_delivery(job_id)


_MENTIONED = re.compile(rf"^{MENTION}$")


def _whom(asker: UserRef, written: str | None) -> UserRef | None:
    """Whose history ``history <written>`` asks for: a mention names someone in the
    asker's own workspace; otherwise a full user reference (the console, the CLI)."""
    if written is None:
        return None
    mention = _MENTIONED.match(written)
    if mention is not None:
        return same_space(asker, mention["user"])
    return UserRef.parse(written)
