"""HTTP Basic for the dashboard: user ``admin`` and ``dashboard.password``.

The check runs as the application's first middleware, before routing, so that nothing
(not a page, not a stylesheet, not even whether a path exists) is answered without the
credentials. A refusal is a 401 with a ``WWW-Authenticate`` header and an empty body.
The comparison hashes both sides first and compares the digests in constant time, so
neither the password's content nor its length shows in the answer's timing.
"""

from __future__ import annotations

import hashlib
import hmac

from aiohttp import BasicAuth, hdrs, web
from aiohttp.typedefs import Handler, Middleware

from bot.dashboard.pages import SECURITY_HEADERS

USER = "admin"
REALM = 'Basic realm="kontext-bot dashboard", charset="UTF-8"'


def _digest(text: str) -> bytes:
    return hashlib.sha256(text.encode("utf-8")).digest()


def credentials_match(header: str | None, password: str) -> bool:
    """Whether an ``Authorization`` header carries ``admin`` and ``password``."""
    if not header or not password:
        return False
    try:
        given = BasicAuth.decode(header, encoding="utf-8")
    except ValueError:
        return False
    user_ok = hmac.compare_digest(_digest(given.login), _digest(USER))
    password_ok = hmac.compare_digest(_digest(given.password), _digest(password))
    return user_ok & password_ok


def unauthorized() -> web.Response:
    return web.Response(status=401, headers={hdrs.WWW_AUTHENTICATE: REALM, **SECURITY_HEADERS})


def basic_auth(password: str) -> Middleware:
    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if not credentials_match(request.headers.get(hdrs.AUTHORIZATION), password):
            return unauthorized()
        answer: web.StreamResponse = await handler(request)
        return answer

    return middleware
