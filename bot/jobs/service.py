"""The core's service API: the only door adapters use to reach jobs and credits.

Everything here is fast (validation and one transaction): adapters call it before or
right after acknowledging the platform, and the slow work happens in the job runner.
"""

from __future__ import annotations

import mimetypes
import secrets
import uuid
from collections.abc import Sequence
from dataclasses import replace
from typing import Any, Protocol

from bot import i18n
from bot.chat import texts
from bot.chat.cancel_answers import CancelAnswer, Outcome
from bot.chat.commands import MAX_VARIATIONS, validate_prompt
from bot.chat.credit_status import BudgetStatus, CreditStatus
from bot.chat.presets import PresetBook
from bot.credits.ledger import LedgerEntry
from bot.credits.limits import LIMITS, Limits, validate_changes
from bot.credits.models import Catalogue, Model, short_name
from bot.credits.periods import Period, next_period_start, period_start
from bot.credits.policies import Override
from bot.credits.scopes import GLOBAL, parse_scope, scope_workspace, scopes_for
from bot.domain import (
    SEED_MAX,
    Acknowledgement,
    AttachmentSource,
    EditRequest,
    Job,
    JobState,
    RequestContext,
    UserRef,
)
from bot.errors import ErrorKind, KontextError, ProviderUnavailable, UserInputError
from bot.i18n import _, ngettext, number
from bot.images import ACCEPTED_FORMATS, formats_phrase
from bot.jobs import cancellation
from bot.jobs.queue import JobQueue
from bot.jobs.reservations import NewJob
from bot.providers.base import ProviderCapabilities
from bot.server.metrics import Metrics

_CONTENT_TYPES = {f"image/{name}" for name in ACCEPTED_FORMATS} | {"image/jpg"}


def _declared_type(source: AttachmentSource) -> str | None:
    """The content type the platform declared, else one guessed from the file name."""
    declared = (source.content_type or "").split(";")[0].strip().lower()
    return declared or mimetypes.guess_type(source.name)[0]


def _declared_format(source: AttachmentSource) -> str:
    """``image`` for a type we read, ``other`` for one we don't, ``unknown`` when
    nothing was declared: that one is let through for the runner to decode."""
    declared = _declared_type(source)
    if declared is None:
        return "unknown"
    return "image" if declared in _CONTENT_TYPES else "other"


class Wakeable(Protocol):
    """What the service tells the runner, through its doorbell: a job was queued, a
    cancel was asked of a job, a queued job was withdrawn."""

    def wake(self) -> None: ...

    def hint(self, job_id: str) -> None:
        """Look at this job now (a cancel was asked of it)."""

    def withdrawn(self, job: Job, text: str) -> None:
        """A queued job was canceled: its status message goes, and its requester hears."""


class _NobodyListens:
    """Without a runner (the credits CLI has none), queued jobs wait."""

    def wake(self) -> None:
        return None

    def hint(self, job_id: str) -> None:
        return None

    def withdrawn(self, job: Job, text: str) -> None:
        return None


class KontextService:
    def __init__(
        self,
        store: JobQueue,
        capabilities: ProviderCapabilities,
        *,
        provider_name: str,
        model: str,
        max_input_bytes: int,
        metrics: Metrics | None = None,
        admins: Sequence[str] = (),
        platform_admins: bool = False,
        models: Catalogue | None = None,
        queued: Wakeable | None = None,
        max_total_input_bytes: int = 50_000_000,
        default_language: str = i18n.SOURCE,
        presets: PresetBook | None = None,
        result_buttons: Sequence[str] = (),
        max_variations: int = MAX_VARIATIONS,
        dashboard_url: str = "",
    ) -> None:
        """``queued`` hears of each job stored: the runner's doorbell, made before both
        (bot.app), so neither is handed to the other after it is built."""
        self.store = store
        # The cap on the sum of a job's inputs (``images.max_total_input_bytes``).
        self.max_total_input_bytes = max_total_input_bytes
        # ``[i18n] default``: the language when nobody and nothing names one (bot.i18n).
        self.default_language = default_language
        # ``--n``: the most variations one request may ask (``jobs.max_variations``).
        self.max_variations = max_variations
        self.admins = frozenset(admins)
        # Where admins open the operator's dashboard (``dashboard.public_url`` of an
        # enabled dashboard); empty: no link is shown.
        self.dashboard_url = dashboard_url
        self.platform_admins = platform_admins
        self.metrics = metrics or Metrics()
        self.accepting = True
        self.capabilities = capabilities
        self.provider_name = provider_name
        self.model = model
        self.max_input_bytes = min(max_input_bytes, capabilities.max_input_bytes)
        self._queued: Wakeable = queued or _NobodyListens()
        # The named models (``--model``); without a list, the one provider model.
        self.models = models or Catalogue.single(
            short_name(model), capabilities.cost_per_image, {provider_name: model}
        )
        # The presets in force and a result's buttons (``[[presets]]``, ``[results]``;
        # the conversation layer decides what they mean, bot.chat.presets).
        self.presets = presets if presets is not None else PresetBook()
        self.result_buttons = tuple(result_buttons)

    @property
    def cost_per_image(self) -> int:
        """What an image of the default model costs."""
        return self.models.default.cost

    def stop_accepting(self) -> None:
        """Shutting down: refuse new requests (nothing is reserved for them)."""
        self.accepting = False

    async def submit(self, request: EditRequest) -> Acknowledgement:
        """Validate, reserve and queue; a repeated idempotency key returns the first job."""
        platform = request.user.platform
        try:
            ack = await self._submit(request)
        except KontextError as exc:
            refused = (
                "unavailable" if exc.kind == ErrorKind.PROVIDER_UNAVAILABLE else exc.kind.value
            )
            self.metrics.requests.labels(platform, refused).inc()
            raise
        self.metrics.requests.labels(platform, "duplicate" if ack.duplicate else "accepted").inc()
        return ack

    async def _submit(self, request: EditRequest) -> Acknowledgement:
        # The store finds a repeated idempotency key itself; only a shutdown needs to know
        # beforehand (a redelivered event still gets its job, a new one is refused).
        if not self.accepting:
            if await self.store.by_idempotency_key(request.idempotency_key) is None:
                raise ProviderUnavailable(
                    _(
                        "The bot is restarting and not taking new edits. Please try again in a "
                        "minute; nothing was charged."
                    )
                )
        else:
            self._validate(request)
        model = self.model_of(request)
        if model.restricted:
            await self._check_model_allowed(request, model)
        provider, model_id = self._first_taker(model, request)
        options = replace(
            request.options, model=model.name if self.models.several else None, count=1
        )
        new = NewJob(
            idempotency_key=request.idempotency_key,
            user=request.user,
            prompt=request.prompt,
            options=options,
            attachments=tuple(a.source for a in request.attachments),
            reply_target=request.reply_target,
            # One amount, reserved, charged or refunded whole (docs/models.md).
            cost=model.cost_for(len(request.attachments)),
            provider=provider,
            model=model_id,
            context=request.context,
            model_name=model.name if self.models.several else None,
            # The language the conversation layer decided for this request (bot.i18n);
            # every variation of a group keeps it, as a single job does.
            locale=i18n.current_code(),
        )
        if request.options.count > 1:
            return await self._submit_group(new, request.options.count)
        if options.seed is None and options.upscale is None:
            # Chosen here, stored with the job and shown with the result, so a good edit
            # can be reproduced and a re-roll differs from something known.
            new = replace(new, options=replace(options, seed=secrets.randbelow(SEED_MAX + 1)))
        stored = await self.store.create(new)
        # The position at acceptance, before the runner may already have taken the job:
        # counted when the job was stored, read now only for a redelivered event's job.
        position = stored.queue_position
        if position is None:
            position = await self.store.queue_position(stored.job)
        if not stored.duplicate:
            self._queued.wake()
        return Acknowledgement(
            job=stored.job,
            queue_position=position,
            balance_after=stored.balance_after,
            duplicate=stored.duplicate,
        )

    async def _submit_group(self, new: NewJob, count: int) -> Acknowledgement:
        """``--n COUNT``: that many jobs, each with its own seed (the user's seed, then
        seed+1 ...; else each picked here), reserved together or refused whole."""
        if count > self.max_variations:
            raise UserInputError(texts.count_refused(str(count), self.max_variations))
        given = new.options.seed
        group_id = uuid.uuid4().hex
        members = []
        for index in range(1, count + 1):
            seed = (
                (given + index - 1) % (SEED_MAX + 1)
                if given is not None
                else secrets.randbelow(SEED_MAX + 1)
            )
            members.append(
                replace(
                    new,
                    # The first keeps the platform's key: a redelivered event finds it.
                    idempotency_key=(
                        new.idempotency_key if index == 1 else f"{new.idempotency_key}#{index}"
                    ),
                    options=replace(new.options, seed=seed),
                    group_id=group_id,
                    group_index=index,
                    group_size=count,
                )
            )
        stored = await self.store.create_group(members)
        first = stored[0]
        position = first.queue_position
        if position is None:
            position = await self.store.queue_position(first.job)
        if not first.duplicate:
            self._queued.wake()
        return Acknowledgement(
            job=first.job,
            queue_position=position,
            balance_after=first.balance_after,
            duplicate=first.duplicate,
            group=tuple(r.job for r in stored),
        )

    def _first_taker(self, model: Model, request: EditRequest) -> tuple[str, str]:
        """The first provider serving ``model`` whose profile takes this request (its
        image count and options), with the model's id there. Refused free when none
        does: the failover could only fail it later, after the credits were taken."""
        if not model.ids:
            return self.provider_name, self.model
        options = request.options
        if options.upscale is not None:
            for provider, model_id in model.ids.items():
                upscale = model.profile(provider).upscale
                if upscale is not None and options.upscale in upscale.scales:
                    return provider, model_id
            raise UserInputError(texts.upscale_scale_refused(str(options.upscale), model.scales))
        for provider, model_id in model.ids.items():
            if model.profile(provider).takes(
                images=len(request.attachments),
                ratio=options.aspect_ratio,
                safety=options.safety,
                fmt=options.output_format,
                res=options.resolution,
            ):
                return provider, model_id
        raise UserInputError(_(texts.NO_PROVIDER_TAKES))

    async def _check_model_allowed(self, request: EditRequest, model: Model) -> None:
        """A restricted model is taken only where an override that applies lists it
        (docs/credits.md); elsewhere it is refused before anything is reserved."""
        book = self.store.policy_book
        found = await self.store.bank.overrides(
            [GLOBAL, *scopes_for(request.user, request.context)]
        )
        allowed = book.allowed_models(found, request.user, request.context)
        if model.name.lower() in allowed:
            return
        usable = [m for m in self.models.models if not m.restricted or m.name.lower() in allowed]
        listed = ", ".join(
            ngettext("{model} ({n} credit)", "{model} ({n} credits)", m.cost).format(
                model=m.name, n=number(m.cost)
            )
            for m in usable
        )
        raise UserInputError(
            _(
                "The model {model} is not available here (an admin limits where it can be "
                "used). You can use: {models}. Nothing was charged."
            ).format(model=model.name, models=listed)
        )

    def check(self, request: EditRequest) -> None:
        """Refuse bad input before anything is stored, so an adapter can answer a mistake
        at once (e.g. ephemerally, before deferring) instead of after a round trip."""
        self._validate(request)

    def pick_inputs(self, files: Sequence[AttachmentSource]) -> tuple[AttachmentSource, ...]:
        """The input images among the files a person attached: the first ones of a type
        the provider reads. Files that are all something else (a PDF, notes.txt, an
        HEIC) are refused by name: quietly dropping them would turn the request into a
        paid text-to-image job nobody asked for."""
        if not files:
            return ()
        images = [f for f in files if _declared_format(f) != "other"]
        if not images:
            named = ", ".join(f"'{f.name}'" for f in files[:3])
            kind = _declared_type(files[0]) or _("an unknown type")
            raise UserInputError(
                ngettext(
                    "{files} is not an image I can edit ({kind}). Attach one of: {formats}; "
                    "nothing was charged.",
                    "{files} are not an image I can edit ({kind}). Attach one of: {formats}; "
                    "nothing was charged.",
                    len(files),
                ).format(files=named, kind=kind, formats=self.accepted_formats())
            )
        # Every image, in order: a request with more than its model takes is refused by
        # name (``_validate``), not cut short into another edit than was asked.
        return tuple(images)

    def left_out(self, files: Sequence[AttachmentSource]) -> tuple[str, ...]:
        """The names of the files beside the images that are no image: left out of the
        edit, and named in the acknowledgement."""
        if not any(_declared_format(f) != "other" for f in files):
            return ()
        return tuple(f.name for f in files if _declared_format(f) == "other")

    def accepted_formats(self) -> str:
        return formats_phrase(self.capabilities.input_formats)

    def model_of(self, request: EditRequest) -> Model:
        """The model a request is for: an upscale's upscaler (``--upscale``), else the
        edit model named or the default. An upscaler is never an edit's model, nor an
        edit model an upscale's (refused free)."""
        options = request.options
        if options.upscale is not None:
            upscaler = self.models.upscaler(options.model)
            if upscaler is None:
                named = self.models.get(options.model) if options.model else None
                if named is not None:
                    names = [m.name for m in self.models.upscalers]
                    raise UserInputError(texts.model_not_upscaler(named.name, names))
                raise UserInputError(_(texts.NO_UPSCALER))
            return upscaler
        model = self.models.choose(options.model)
        if model.upscales:
            raise UserInputError(texts.model_is_upscaler(model.name, model.scales))
        return model

    def _validate(self, request: EditRequest) -> None:
        model = self.model_of(request)
        profile = model.main_profile
        if not 1 <= request.options.count <= self.max_variations:
            raise UserInputError(
                texts.count_refused(str(request.options.count), self.max_variations)
            )
        if request.options.upscale is not None and request.options.count > 1:
            raise UserInputError(_(texts.UPSCALE_ONCE))
        given = len(request.attachments)
        if request.options.upscale is not None:
            if given == 0:
                raise UserInputError(_(texts.UPSCALE_NEEDS_IMAGE))
            if given > 1:
                raise UserInputError(_(texts.UPSCALE_ONE_IMAGE))
        else:
            validate_prompt(request.prompt, self.capabilities, profile)
        if given > model.max_images:
            other = self.models.taking(given)
            raise UserInputError(
                texts.too_many_images(
                    model.name, model.max_images, given, other if other is not model else None
                )
            )
        supports_text = self.capabilities.supports_text_to_image and profile.text_to_image
        if not request.attachments and not supports_text:
            raise UserInputError(_("Attach an image to edit: this model only edits images."))
        declared = sum(a.source.size or 0 for a in request.attachments)
        if given > 1 and declared > self.max_total_input_bytes:
            raise UserInputError(texts.inputs_too_large(declared, self.max_total_input_bytes))
        for attachment in request.attachments:
            source = attachment.source
            if _declared_format(source) == "other":
                raise UserInputError(
                    _(
                        "'{name}' is not an image I can edit ({type}). Send one of: {formats}."
                    ).format(
                        name=source.name,
                        type=_declared_type(source),
                        formats=self.accepted_formats(),
                    )
                )
            if source.size is not None and source.size > self.max_input_bytes:
                raise UserInputError(
                    _("'{name}' is {size} MB; the limit is {limit} MB.").format(
                        name=source.name,
                        size=number(source.size / 1e6, "0.0"),
                        limit=number(round(self.max_input_bytes / 1e6), "0"),
                    )
                )

    async def job_for_key(self, idempotency_key: str) -> Job | None:
        """The job a platform event already created, so an adapter can skip slow work
        (file look-ups) for a redelivered event."""
        return await self.store.by_idempotency_key(idempotency_key)

    async def job(self, job_id: str) -> Job | None:
        return await self.store.get(job_id)

    async def credits(self, user: UserRef, context: RequestContext | None = None) -> CreditStatus:
        """The user's balance after any allowance due, and what it buys."""
        store = self.store
        now = store.clock()
        limits, balance = await store.bank.account(user, context or RequestContext(), now)
        cost = self.cost_per_image
        return CreditStatus(
            user=user,
            balance=balance,
            cost_per_image=cost,
            images_left=balance // cost if cost else 0,
            next_allowance_at=next_period_start(limits.period, now),
            allowance=limits.allowance,
            active_jobs=await store.active_for_user(user),
            models=self.models.models if self.models.several else (),
        )

    async def cancel(
        self, user: UserRef, job_id: str | None = None, *, platform_admin: bool = False
    ) -> CancelAnswer:
        """Cancel ``job_id``, or the asker's newest unfinished job: only the requester or
        an admin may (bot.jobs.cancellation says what happens at each stage)."""
        if job_id is None:
            job = await cancellation.newest_unfinished(self.store, user)
        else:
            job = await self.store.get(job_id)
        if job is None:
            return CancelAnswer(Outcome.NONE)
        if job.user != user and not self.is_admin(user, platform_admin=platform_admin):
            return CancelAnswer(Outcome.NOT_YOURS, job)
        if job.state.terminal or job.state == JobState.DELIVERING:
            return CancelAnswer(Outcome.FINISHED, job)
        if job.state == JobState.QUEUED:
            balance = await cancellation.cancel_queued(self.store, job, texts.CANCELED_QUEUED)
            if balance is not None:
                # Told to the requester, in their request's language (the canceler may
                # be an admin who speaks another).
                with i18n.using(job.locale or self.default_language):
                    self._queued.withdrawn(job, texts.withdrawn_text(balance))
                return CancelAnswer(Outcome.CANCELED, job, balance)
            job = await self.store.get(job.id) or job  # a runner took it meanwhile
            if job.state != JobState.RUNNING:
                return CancelAnswer(Outcome.FINISHED, job)
        if job.provider in cancellation.CANNOT_CANCEL:
            return CancelAnswer(Outcome.CANNOT, job)
        if not await cancellation.ask_to_cancel(self.store, job.id):
            fresh = await self.store.get(job.id) or job
            asked = fresh.cancel_requested and fresh.state == JobState.RUNNING
            return CancelAnswer(Outcome.ALREADY_ASKED if asked else Outcome.FINISHED, fresh)
        self._queued.hint(job.id)  # when this process runs it: look now, not at the next poll
        return CancelAnswer(Outcome.ASKED, job)

    def is_admin(self, user: UserRef, *, platform_admin: bool = False) -> bool:
        """``platform_admin`` is the adapter's word that the platform itself calls this
        user an admin (Discord Manage Server, Slack workspace admin); it counts only when
        the operator set ``credits.platform_admins``."""
        return str(user) in self.admins or (self.platform_admins and platform_admin)

    def _require_admin(
        self, admin: UserRef, platform_admin: bool, scope: str | None = None
    ) -> None:
        """``credits.admins`` may act anywhere; a platform's admin only in their own
        workspace (a Discord server's moderators cannot pause another server)."""
        if str(admin) in self.admins:
            return
        if self.is_admin(admin, platform_admin=platform_admin):
            if scope is None or scope_workspace(scope) == (admin.platform, admin.workspace):
                return
            raise UserInputError(_("You can only change the bot's settings in your own workspace."))
        if self.platform_admins:
            raise UserInputError(
                _(
                    "Only the bot's admins can do that "
                    "(credits.admins, or the platform's own admins)."
                )
            )
        raise UserInputError(_("Only the bot's admins can do that (credits.admins)."))

    async def admin_set_allowance(
        self,
        admin: UserRef,
        scope: str,
        amount: int | None,
        period: Period | None = None,
        *,
        platform_admin: bool = False,
    ) -> Override:
        """Set (``amount``) or remove (None) a scope's allowance override; stored, so it
        holds across restarts and for every process."""
        scope = parse_scope(scope)
        self._require_admin(admin, platform_admin, scope)
        if amount is not None and amount < 0:
            raise UserInputError(_("An allowance cannot be negative."))
        what = (
            f"allowance of {scope} set to {amount}" + (f" {period}" if period else "")
            if amount is not None
            else f"allowance override of {scope} removed"
        )
        return await self._store_policy(
            admin, scope, what, allowance=amount, period=period, clear_allowance=amount is None
        )

    async def admin_pause(
        self, admin: UserRef, scope: str, paused: bool, *, platform_admin: bool = False
    ) -> Override:
        """Pause (or resume) new requests in a scope; jobs already queued finish."""
        scope = parse_scope(scope)
        self._require_admin(admin, platform_admin, scope)
        what = f"{'paused' if paused else 'resumed'} {scope}"
        return await self._store_policy(admin, scope, what, paused=paused)

    async def admin_set_models(
        self,
        admin: UserRef,
        scope: str,
        names: Sequence[str],
        *,
        platform_admin: bool = False,
    ) -> Override:
        """Allow the restricted models ``names`` in ``scope`` (empty: none there any
        more); stored, over the config's ``models`` of that scope (docs/credits.md)."""
        scope = parse_scope(scope)
        self._require_admin(admin, platform_admin, scope)
        chosen = tuple(dict.fromkeys(self.models.choose(name).name for name in names))
        what = f"models allowed in {scope}: {', '.join(chosen) or 'none'}"
        return await self._store_policy(admin, scope, what, models=chosen)

    async def admin_set_limits(self, admin: UserRef, **changes: Any) -> Limits:
        """Change the operator's limits for everyone at run time (stored, over the
        config); only ``credits.admins`` may. ``changes`` name limits as ``bot.credits.limits``
        does (None: unchanged), checked against its bounds. Returns the limits now in
        force."""
        self._require_admin(admin, False, GLOBAL)
        checked = validate_changes(changes)
        if not checked:
            raise UserInputError(_("Name at least one limit to change."))
        said = ", ".join(f"{name} {value}" for name, value in checked.items())
        await self._store_policy(admin, GLOBAL, f"limits set: {said}", **checked)
        return await self.limits()

    async def admin_reset_limits(self, admin: UserRef, names: list[str]) -> Limits:
        """Drop stored run-time limits (``policy limits --reset KEY``): the config's
        values are in force again; recorded in the ledger like every admin action."""
        self._require_admin(admin, False, GLOBAL)
        unknown = [name for name in names if name not in LIMITS]
        if unknown or not names:
            raise UserInputError(
                _("Name limits to reset: {limits} (or 'all').").format(limits=", ".join(LIMITS))
            )
        what = f"limits reset to the config: {', '.join(names)}"
        await self.store.bank.reset_limits(names, actor=str(admin), what=what)
        return await self.limits()

    async def limits(self) -> Limits:
        """The limits in force for everyone: the config with the stored global changes."""
        return await self.store.bank.limits_in_force()

    async def _store_policy(self, admin: UserRef, scope: str, what: str, **change: Any) -> Override:
        return await self.store.bank.change_policy(scope, actor=str(admin), what=what, **change)

    # -- languages (bot.i18n; issue 28) ------------------------------------------------------

    async def language_of(self, user: UserRef) -> str | None:
        """The language an admin set for the user's server or workspace, if any."""
        scope = f"workspace:{user.platform}:{user.workspace}"
        found = (await self.store.bank.overrides([scope])).get(scope)
        return found.language if found is not None else None

    async def admin_set_language(
        self, admin: UserRef, code: str | None, *, platform_admin: bool = False
    ) -> Override:
        """Set the language of the admin's own server or workspace (``None``: each
        person's own again). A language the bot has no catalog for is refused, naming
        the ones it has."""
        scope = f"workspace:{admin.platform}:{admin.workspace}"
        self._require_admin(admin, platform_admin, scope)
        chosen = i18n.match(code) if code is not None else None
        if code is not None and chosen is None:
            raise UserInputError(
                _("I have no {language} texts; choose one of: {languages} (or auto).").format(
                    language=code, languages=", ".join(i18n.SHIPPED)
                )
            )
        what = f"language of {scope}: {chosen or 'auto'}"
        return await self._store_policy(admin, scope, what, language=chosen or "")

    async def admin_policy(self, scope: str) -> Override | None:
        return (await self.store.bank.overrides([parse_scope(scope)])).get(scope)

    async def admin_grant(
        self, admin: UserRef, user: UserRef, amount: int, *, platform_admin: bool = False
    ) -> int:
        """A grant asked for on a platform: only admins may, and the ledger records who
        did it."""
        self._require_admin(admin, platform_admin, f"user:{user}")
        return await self.grant(user, amount, actor=str(admin), note=f"granted by {admin}")

    async def admin_history(
        self, admin: UserRef, user: UserRef, *, limit: int = 10, platform_admin: bool = False
    ) -> list[LedgerEntry]:
        self._require_admin(admin, platform_admin, f"user:{user}")
        return await self.history(user, limit)

    async def budget(self) -> BudgetStatus:
        """The shared budget, its period's spend and today's (the admins' part of the
        Home tab): the limits in force and one read of the ledger; free."""
        store = self.store
        now = store.clock()
        limits = await self.limits()
        period = store.policy_book.budget_period_of(limits)
        in_period, today = await store.bank.spent_since(
            period_start(period, now), period_start("daily", now)
        )
        return BudgetStatus(
            budget=limits.budget, period=period, spent_in_period=in_period, spent_today=today
        )

    async def admin_top_spenders(
        self, admin: UserRef, *, limit: int = 10, platform_admin: bool = False
    ) -> list[tuple[str, int]]:
        """Who spent the most credits this period (charged images; refunds excluded)."""
        self._require_admin(admin, platform_admin)
        store = self.store
        since = period_start((await self.limits()).period, store.clock())
        return await store.bank.top_spenders(since, limit)

    async def grant(
        self, user: UserRef, amount: int, *, actor: str, note: str | None = None
    ) -> int:
        """Add (or with a negative amount, take away) credits; returns the new balance."""
        if amount == 0:
            raise UserInputError(_("A grant of 0 credits changes nothing."))
        return await self.store.bank.grant(user, amount, actor=actor, note=note)

    # -- a user's recent jobs (/kontext history) ----------------------------------------------

    async def job_history(
        self, asker: UserRef, user: UserRef, *, limit: int = 10, platform_admin: bool = False
    ) -> list[Job]:
        """The newest jobs of ``user``, free. Anyone may read their own; someone else's
        only an admin (``credits.admins``, or a platform admin in their own workspace
        where the operator allows it)."""
        if user != asker:
            try:
                self._require_admin(asker, platform_admin, f"user:{user}")
            except UserInputError:
                raise UserInputError(
                    _(
                        "You can only see your own history; only the bot's admins can see "
                        "someone else's."
                    )
                ) from None
        return await self.store.recent_for_user(user, limit)

    async def forget_delivery(self, job_id: str) -> None:
        """The posted result of a job was deleted on the platform."""
        await self.store.forget_delivery(job_id)

    async def history(self, user: UserRef, limit: int = 20) -> list[LedgerEntry]:
        return await self.store.bank.history(user, limit)


__all__ = ["CreditStatus", "KontextService", "Limits"]
