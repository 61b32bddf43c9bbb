"""Downloading users' files from Slack with the bot token, safely.

The bot token may only ever be sent to Slack's own file hosts (``slack.file_hosts``):
the URL is checked before the request, and every redirect is checked again rather than
followed blindly. Slack answers an HTML login page (status 200) when the token lacks the
``files:read`` scope; that is turned into a message an operator can act on.
"""

from __future__ import annotations

from collections.abc import Sequence
from urllib.parse import urljoin, urlsplit

import httpx

from bot.errors import ProviderUnavailable, UserInputError
from bot.i18n import N_, _, number
from bot.jobs.downloads import read_capped

MAX_REDIRECTS = 3
_MISSING_SCOPE = N_(
    "I can't read files in this workspace: the bot's Slack token lacks the files:read "
    "scope. Ask an admin to add it and reinstall the app."
)
_NOT_HANDED_OVER = N_("Slack did not hand over the file. Please try again.")


class SlackFileFetcher:
    def __init__(self, client: httpx.AsyncClient, token: str, file_hosts: Sequence[str]) -> None:
        self.client = client
        self._token = token
        self.file_hosts = {host.lower() for host in file_hosts}

    def allowed(self, url: str) -> bool:
        parts = urlsplit(url)
        return parts.scheme in {"https", "http"} and (parts.hostname or "") in self.file_hosts

    async def fetch(self, url: str, max_bytes: int) -> bytes:
        """The file's bytes, at most ``max_bytes`` (more is refused, not truncated)."""
        for _hop in range(MAX_REDIRECTS + 1):
            if not self.allowed(url):
                # Never show the URL: it names the workspace's private file.
                raise UserInputError(
                    _(
                        "That file is not hosted by Slack, so I won't download it with the "
                        "bot's credentials."
                    ),
                    detail="file URL outside slack.files_hosts",
                )
            headers = {"Authorization": f"Bearer {self._token}"}
            try:
                async with self.client.stream("GET", url, headers=headers) as response:
                    if response.is_redirect:
                        url = urljoin(url, response.headers.get("location", ""))
                        continue
                    if response.status_code in (401, 403):
                        raise UserInputError(
                            _(_MISSING_SCOPE), detail=f"file download HTTP {response.status_code}"
                        )
                    if response.status_code == 404:
                        raise UserInputError(
                            _("That file was deleted or I can't see it."),
                            detail="file download HTTP 404",
                        )
                    if response.status_code >= 400:
                        raise ProviderUnavailable(
                            _(_NOT_HANDED_OVER),
                            detail=f"file download HTTP {response.status_code}",
                        )
                    content_type = response.headers.get("content-type", "")
                    if content_type.startswith("text/html"):
                        raise UserInputError(
                            _(_MISSING_SCOPE), detail="file download answered with a web page"
                        )
                    data = await read_capped(response, max_bytes)
                    if data is None:
                        raise UserInputError(
                            _("The image is larger than {limit} MB.").format(
                                limit=number(round(max_bytes / 1e6))
                            ),
                            detail=f"file larger than {max_bytes} bytes",
                        )
                    return data
            except httpx.HTTPError as exc:
                raise ProviderUnavailable(
                    _(_NOT_HANDED_OVER),
                    detail=f"file download {type(exc).__name__}",
                ) from None
        raise UserInputError(
            _("The file's link redirected too many times."),
            detail=f"file URL redirected more than {MAX_REDIRECTS} times",
        )
