"""Answering a request only once its fate is known: reserve first, then respond.

Discord's rule (receiving-and-responding, "Create Followup Message"): a follow-up sent
directly after a type 5 deferral *edits the loading message* and ignores the ephemeral
flag. So a public "thinking" deferral followed by an ephemeral refusal shows the refusal
publicly. Instead the adapter runs the reservation (``Conversation.submit``: quota,
pause, cooldown, budget, shutting down) before its first response, which is well inside
Discord's 3 seconds:

- refused: the initial response is the refusal itself, ephemeral (type 4, flag 64);
  nothing public ever exists and nothing was charged;
- accepted: the initial response is the public "Queued…" itself (type 4), edited
  by the job afterwards: the acknowledgement costs no call of its own (issue 24: in
  a burst every webhook call counts against the interaction's bucket);
- the reservation is slow (not done within ``budget`` seconds): an *ephemeral*
  deferral first, so the 3-second rule is kept; a refusal then edits that private
  message, an acceptance edits it into the private "Queued…" and the result is posted
  as a new public follow-up.

The job's reply target is stored before any of this happens, so it names the status
message as ``@original`` (known before it exists); ``Acks`` tells the job's reply, which
may start before the response is sent, what the response became.

Art-channel messages are answered the same way round: reserve, then post "⏳ Queued…"
(or the refusal), so a refusal never leaves a public "Queued" behind.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import discord
import structlog

from adapters.discord.components import cancel_view
from adapters.discord.reply import (
    NO_PINGS,
    ORIGINAL,
    TOKEN_LIFETIME_SECONDS,
    DiscordReply,
    pings,
    short,
)
from bot.chat.conversation import Conversation, Submitted
from bot.domain import EditRequest

log = structlog.get_logger("kontext.discord")
_KEEP = 10_000  # acknowledgements remembered (a bound; old ones are long settled)
_OOPS = "❌ Something went wrong on my side; nothing was charged. Please try again."

ReplyFactory = Callable[[dict[str, Any]], DiscordReply]


class Acks:
    """Per request (its idempotency key), what the adapter's first answer became:
    ``{"status": "public" | "ephemeral" | "lost"}`` for interactions, ``{"message": id}``
    for an art channel's status message. The job's reply waits on it."""

    def __init__(self) -> None:
        self._futures: dict[str, asyncio.Future[dict[str, Any]]] = {}

    def open(self, key: str) -> asyncio.Future[dict[str, Any]]:
        while len(self._futures) >= _KEEP:
            self._futures.pop(next(iter(self._futures)))
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._futures[key] = future
        return future

    def get(self, key: str) -> asyncio.Future[dict[str, Any]] | None:
        return self._futures.get(key)

    @staticmethod
    def settle(future: asyncio.Future[dict[str, Any]], updates: dict[str, Any]) -> None:
        if not future.done():
            future.set_result(updates)


def interaction_target(interaction: discord.Interaction[Any]) -> dict[str, Any]:
    """Everything needed to answer through the interaction later, known before any
    response: the status message is the interaction's ``@original``."""
    return {
        "kind": "interaction",
        "interaction": str(interaction.id),
        "application": str(interaction.application_id),
        "token": interaction.token,
        "expires_at": time.time() + TOKEN_LIFETIME_SECONDS,
        "message": ORIGINAL,
        "channel": str(interaction.channel_id),
        "user": str(interaction.user.id),
        "upload_limit": interaction.filesize_limit,
    }


def _queued(submitted: Submitted, prompt: str) -> str:
    return f"⏳ {submitted.text} `{short(prompt, 150)}`"


def _refusal(submitted: Submitted, prompt: str) -> str:
    return f"❌ {submitted.text}\n`{short(prompt, 150)}`"


async def answer_interaction(
    interaction: discord.Interaction[Any],
    request: EditRequest,
    *,
    conversation: Conversation,
    acks: Acks,
    reply: ReplyFactory,
    budget: float,
) -> None:
    """Reserve, then give the one initial response (see the module docstring)."""
    target = interaction_target(interaction)
    ack = acks.open(request.idempotency_key)
    updates: dict[str, Any] = {"status": "lost"}
    submission = asyncio.ensure_future(conversation.submit(replace(request, reply_target=target)))
    try:
        done, _ = await asyncio.wait({submission}, timeout=budget)
        if done:
            submitted = submission.result()
            if not submitted.accepted:
                await interaction.response.send_message(
                    _refusal(submitted, request.prompt), ephemeral=True, allowed_mentions=NO_PINGS
                )
                return
            text = _queued(submitted, request.prompt)
            if submitted.job_id is not None and not submitted.duplicate:
                # The Cancel button stays through the status edits (an edit without
                # components keeps them) until the result brings its own buttons.
                await interaction.response.send_message(
                    text, allowed_mentions=NO_PINGS, view=cancel_view(submitted.job_id)
                )
            else:
                await interaction.response.send_message(text, allowed_mentions=NO_PINGS)
            updates = {"status": "public"}
            return
        else:
            await interaction.response.defer(thinking=True, ephemeral=True)
            updates = {"status": "ephemeral"}
            try:
                submitted = await submission
            except Exception:
                await interaction.edit_original_response(content=_OOPS, allowed_mentions=NO_PINGS)
                raise
            if not submitted.accepted:
                await interaction.edit_original_response(
                    content=_refusal(submitted, request.prompt), allowed_mentions=NO_PINGS
                )
                return
        # Before the job's own reply may speak (it waits for ``ack``): nothing it posts
        # can be overwritten by this "queued". (Only after a slow reservation: the
        # private deferral is edited into it.)
        status = reply({**target, **updates})
        if submitted.job_id is not None and not submitted.duplicate:
            # The Cancel button stays through the status edits (an edit without
            # components keeps them) until the result brings its own buttons.
            await status._edit_status(
                content=_queued(submitted, request.prompt),
                allowed_mentions=NO_PINGS,
                view=cancel_view(submitted.job_id),
            )
        else:
            await status._status(_queued(submitted, request.prompt))
    except discord.HTTPException as exc:
        log.warning("answering the interaction failed", status=exc.status, code=exc.code)
    finally:
        Acks.settle(ack, updates)


async def answer_message(
    message: discord.Message,
    request: EditRequest,
    target: dict[str, Any],
    *,
    conversation: Conversation,
    acks: Acks,
) -> None:
    """An art-channel request: reserve, then post the status reply (or the refusal)."""
    ack = acks.open(request.idempotency_key)
    updates: dict[str, Any] = {}
    try:
        submitted = await conversation.submit(replace(request, reply_target=target))
        if not submitted.accepted:
            await message.reply(
                _refusal(submitted, request.prompt), allowed_mentions=pings(message.author.id)
            )
            return
        text = _queued(submitted, request.prompt)
        if submitted.job_id is not None:
            status = await message.reply(
                text,
                mention_author=False,
                allowed_mentions=NO_PINGS,
                view=cancel_view(submitted.job_id),
            )
        else:
            status = await message.reply(text, mention_author=False, allowed_mentions=NO_PINGS)
        updates = {"message": str(status.id)}
    except discord.HTTPException as exc:
        log.warning("answering the message failed", status=exc.status, code=exc.code)
    finally:
        Acks.settle(ack, updates)
