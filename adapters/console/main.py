"""``kontext-bot console``: one edit from a terminal, through the same core as the bots.

Exit codes: 0 done, 1 the user's input (including quota and moderation: something the
user must change), 2 configuration, 3 provider failure or timeout, 4 internal error.
"""

from __future__ import annotations

import asyncio
import mimetypes
import os
import sys
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

from adapters.console.frontend import PLATFORM, ConsoleFrontend, variation_path
from bot.app import build_core
from bot.chat import texts
from bot.chat.conversation import Conversation, Said
from bot.chat.texts import Style
from bot.config import Settings
from bot.domain import AttachmentSource, EditRequest, JobState, UserRef
from bot.errors import ConfigError, ErrorKind, KontextError
from bot.i18n import _, environment_locales, ngettext

EXIT_OK = 0
EXIT_USER = 1
EXIT_CONFIG = 2
EXIT_PROVIDER = 3
EXIT_INTERNAL = 4

_EXIT_BY_KIND = {
    ErrorKind.USER_INPUT: EXIT_USER,
    ErrorKind.QUOTA: EXIT_USER,
    ErrorKind.MODERATION: EXIT_USER,
    ErrorKind.PROVIDER_UNAVAILABLE: EXIT_PROVIDER,
    ErrorKind.PLATFORM: EXIT_PROVIDER,
    ErrorKind.INTERNAL: EXIT_INTERNAL,
    ErrorKind.CANCELED: EXIT_USER,
}


def console_user() -> UserRef:
    return UserRef.local(PLATFORM)


def describe_image(image: Path) -> AttachmentSource | None:
    """The input as the console "platform" declares it; None when it is not a file."""
    if not image.is_file():
        return None
    resolved = image.resolve()
    return AttachmentSource(
        name=resolved.name,
        content_type=mimetypes.guess_type(resolved.name)[0],
        size=resolved.stat().st_size,
        locator=str(resolved),
    )


def default_out_path(image: Path | None, job_id: str, extension: str) -> Path:
    stem = image.stem if image else "kontext"
    return Path.cwd() / f"{stem}-kontext-{job_id[:8]}.{extension}"


async def run_console(
    settings: Settings,
    *,
    image: Path | Sequence[Path] | None,
    out: Path | None,
    text: str,
    stdout: TextIO = sys.stdout,
    stderr: TextIO = sys.stderr,
) -> int:
    def say(message: str) -> None:
        print(message, file=stderr, flush=True)

    # ``--image`` repeated: every input in the order given (the first is edited).
    images = [image] if isinstance(image, Path) else list(image or ())
    sources: list[AttachmentSource] = []
    for path in images:
        source = await asyncio.to_thread(describe_image, path)
        if source is None:
            say(_("error: {path} is not a file").format(path=path))
            return EXIT_USER
        sources.append(source)
    first = images[0] if images else None
    frontend = ConsoleFrontend(stderr)
    # Help, credits and history need no image service: someone trying the bot before
    # they have an API key gets them, and the key is asked for only by an edit.
    cannot_edit: ConfigError | None = None
    try:
        try:
            core = await build_core(settings, {PLATFORM: frontend})
        except ConfigError as exc:
            cannot_edit = exc
            core = await build_core(settings, with_runner=False)
    except ConfigError as exc:
        say(f"configuration error: {exc}")
        return EXIT_CONFIG
    user = console_user()
    conversation = Conversation(core.service, Style())
    try:
        # The terminal's language (LC_ALL, LC_MESSAGES, LANG), decided by the core.
        await conversation.speak(user, *environment_locales(os.environ))
        command = await conversation.read(user, text, files=sources)
        if isinstance(command, Said):
            if command.mistake:
                say(_("error: {message}").format(message=command.text))
                return EXIT_USER
            print(command.text, file=stdout)
            return EXIT_OK
        if cannot_edit is not None:
            say(f"configuration error: {cannot_edit}")
            return EXIT_CONFIG
        await core.start()
        request_id = uuid.uuid4().hex
        extension = command.options.output_format
        out_path = (out or default_out_path(first, request_id, extension)).resolve()
        attachments = tuple(frontend.attachment_for(s) for s in command.inputs)
        ack = await core.service.submit(
            EditRequest(
                user=user,
                prompt=command.prompt,
                options=command.options,
                attachments=attachments,
                reply_target={"out": str(out_path)},
                idempotency_key=f"console:{request_id}",
                left_out=command.left_out,
            )
        )
        queued = texts.queued_text(conversation.style, ack)
        if command.left_out:
            queued += texts.left_out_note(command.left_out)
        say(f"[{ack.job.id[:8]}] {queued}")
        assert core.runner is not None
        async with asyncio.timeout(settings.jobs.timeout_seconds + 120):
            # Variations (--n): every one ends before the group is posted.
            ended = [await core.runner.wait_for(each.id) for each in ack.jobs]
        job = ended[0]
        balance = await core.store.balance(user)
        cost = core.service.cost_per_image
        # With named models, what is left is counted in images of the default one.
        affordable = balance // cost if cost else 0
        if core.service.models.several:
            left = ngettext(
                "balance: {balance} credits ({n} {model} image)",
                "balance: {balance} credits ({n} {model} images)",
                affordable,
            ).format(balance=balance, n=affordable, model=core.service.models.default.name)
        else:
            left = ngettext(
                "balance: {balance} credits ({n} image)",
                "balance: {balance} credits ({n} images)",
                affordable,
            ).format(balance=balance, n=affordable)
        say(left)
        if len(ended) > 1:
            made = [each for each in ended if each.state == JobState.SUCCEEDED]
            for each in made:
                print(variation_path(out_path, each.group_index), file=stdout, flush=True)
            if made:
                return EXIT_OK
        elif job.state == JobState.SUCCEEDED:
            print(out_path, file=stdout, flush=True)
            return EXIT_OK
        return _EXIT_BY_KIND.get(ErrorKind(job.error_kind or "internal"), EXIT_INTERNAL)
    except KontextError as exc:
        say(_("error: {message}").format(message=exc.user_message))
        return _EXIT_BY_KIND[exc.kind]
    except TimeoutError:
        say(_("error: the edit did not finish in time; it resumes on the next start"))
        return EXIT_PROVIDER
    finally:
        await core.close(grace=0)
