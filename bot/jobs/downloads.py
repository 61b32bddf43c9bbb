"""Reading a streamed HTTP body with a byte cap, for every download the bot makes."""

from __future__ import annotations

import httpx


async def read_capped(response: httpx.Response, max_bytes: int) -> bytes | None:
    """The body, or None as soon as it passes ``max_bytes``: an oversized file is
    never held whole in memory."""
    chunks: list[bytes] = []
    total = 0
    async for chunk in response.aiter_bytes():
        total += len(chunk)
        if total > max_bytes:
            return None
        chunks.append(chunk)
    return b"".join(chunks)
