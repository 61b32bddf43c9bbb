"""The console platform's ``Frontend``: files in, files out, progress on stderr.

It is registered in every runner process (``run`` too), so a console job a crash left
behind is still finished and written to the path its owner asked for.
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path
from typing import Any, TextIO

from bot.chat import texts
from bot.chat.platforms import NoConnection
from bot.chat.texts import result_details
from bot.domain import Attachment, AttachmentSource, EditResult, GroupResult, Job
from bot.errors import UserInputError
from bot.i18n import N_, _, number

PLATFORM = "console"


def _read_capped(path: Path, max_bytes: int) -> bytes:
    size = path.stat().st_size
    if size > max_bytes:
        raise UserInputError(
            _("'{name}' is {size} MB; the limit is {limit} MB.").format(
                name=path.name,
                size=number(round(size / 1e6, 1), "0.0"),
                limit=number(round(max_bytes / 1e6)),
            ),
            detail=f"input file is {size} bytes, limit {max_bytes}",
        )
    with path.open("rb") as handle:
        return handle.read(max_bytes + 1)


# The runner's stages, as the console prints them (other texts come already worded).
_STAGES = {"queued": N_("queued"), "editing": N_("editing")}


class ConsoleReply:
    def __init__(self, out_path: Path, stream: TextIO) -> None:
        self.out_path = out_path
        self.stream = stream

    def _say(self, job: Job, text: str) -> None:
        print(f"[{job.id[:8]}] {text}", file=self.stream, flush=True)

    async def progress(self, job: Job, stage: str) -> None:
        self._say(job, _(_STAGES[stage]) if stage in _STAGES else stage)

    async def deliver(
        self, result: EditResult, *, maybe_delivered: bool = False
    ) -> dict[str, Any] | None:
        # Writing the file again is harmless (atomic, same bytes): nothing to look for.
        await asyncio.to_thread(_write_file, self.out_path, result.image)
        job = result.job
        details = ", ".join(
            result_details(job.seed, job.cost, result.balance_after, provider=job.provider)
        )
        self._say(
            job,
            _("done in {seconds} s: {width}x{height} ({details}) written to {path}").format(
                seconds=number(round(result.elapsed_seconds, 1), "0.0"),
                width=result.width,
                height=result.height,
                details=details,
                path=self.out_path,
            ),
        )
        # History points at the file (the console's "link").
        return {"link": str(self.out_path)}

    async def deliver_group(
        self, group: GroupResult, *, maybe_delivered: bool = False
    ) -> dict[str, dict[str, Any]]:
        """Each variation to its own file beside the one asked for (``out-1.png`` ...),
        and one report naming every variation, failed ones with their refund."""
        where: dict[str, dict[str, Any]] = {}
        for result in group.results:
            path = variation_path(self.out_path, result.job.group_index)
            await asyncio.to_thread(_write_file, path, result.image)
            where[result.job.id] = {"link": str(path)}
        first = group.first
        lines = [texts.group_heading(group)]
        for member in group.members:
            line = texts.group_member_line(member)
            if member.result is not None:
                path = variation_path(self.out_path, member.job.group_index)
                line += " " + _("written to {path}").format(path=path)
            lines.append(line)
        self._say(first, "\n".join(lines))
        return where

    async def fail(self, job: Job, message: str) -> None:
        self._say(job, _("failed: {message}").format(message=message))

    async def tell(self, text: str) -> None:
        print(text, file=self.stream, flush=True)


def variation_path(out: Path, index: int) -> Path:
    """Where variation ``index`` of a group is written: ``cat-kontext-1.png`` for
    ``cat-kontext.png``."""
    return out.with_name(f"{out.stem}-{index}{out.suffix}")


def _write_file(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".part")
    temporary.write_bytes(data)
    os.replace(temporary, path)


class ConsoleFrontend(NoConnection):
    platform = PLATFORM

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stderr

    def reply_for(self, job: Job) -> ConsoleReply:
        return ConsoleReply(Path(str(job.reply_target["out"])), self.stream)

    def attachment_for(self, source: AttachmentSource) -> Attachment:
        path = Path(source.locator)

        async def fetch(max_bytes: int) -> bytes:
            try:
                return await asyncio.to_thread(_read_capped, path, max_bytes)
            except FileNotFoundError:
                raise UserInputError(
                    _("'{path}' no longer exists.").format(path=path),
                    detail=f"input file {path} is gone",
                ) from None
            except PermissionError:
                raise UserInputError(
                    _("'{path}' cannot be read (permission denied).").format(path=path),
                    detail=f"input file {path}: permission denied",
                ) from None

        return Attachment(source=source, fetch=fetch)
