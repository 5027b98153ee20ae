"""Every request passes one guard: Host check, token, body size, and the security headers of every answer.

A plain ASGI middleware (not Starlette's ``BaseHTTPMiddleware``), so it wraps every route alike,
static files and ``/openapi.json`` included, and costs microseconds:

- **Token** (when the server has one): an ``X-Token`` or ``Authorization: Bearer`` header, or the
  ``vadindex_token`` cookie, compared in constant time (``hmac.compare_digest`` on bytes). A
  ``?token=`` link (what ``vadindex serve`` prints) is answered with a redirect to the same address
  without it, setting the cookie (``HttpOnly``, ``SameSite=Strict``): the token leaves the address
  bar and the history, and scripts cannot read it.
- **Host** (loopback without a token): the ``Host`` header must name this machine, so a web page
  elsewhere cannot reach the server through a DNS name that it re-points to 127.0.0.1.
- **Body**: at most ``max_body`` bytes, refused from ``Content-Length`` before reading and counted
  while reading (a chunked upload stops at the limit).
- **Headers**: a Content-Security-Policy that lets pages load only the server's own scripts, styles,
  images and video (no inline script, nothing from elsewhere), ``nosniff``, no referrer, no framing,
  and ``Cache-Control: no-store`` unless a route set its own.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode

from starlette.exceptions import HTTPException

from vadindex.web.options import is_loopback

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

COOKIE = "vadindex_token"
HEADER = "x-token"
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; media-src 'self'; "
    "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)
SECURITY_HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
    (b"cross-origin-resource-policy", b"same-origin"),
]


class BodyTooLarge(HTTPException):
    """Raised from ``receive`` when a request body passes the limit (FastAPI passes it on as a 413)."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"request body larger than {limit // 2**20} MB")


class Guard:
    """The ASGI middleware described in the module docstring.

    Args:
        app: the application.
        token: the token every request must carry, or ``None`` (loopback only).
        max_body: the largest request body in bytes.
        check_host: refuse requests whose ``Host`` is not this machine (loopback without a token).
        error_page: renders ``(status, message)`` as an HTML page, for errors answered to pages.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        token: str | None,
        max_body: int,
        check_host: bool,
        error_page: Callable[[int, str], str] | None = None,
    ) -> None:
        self.app = app
        self.token = token.encode() if token is not None else None
        self.max_body = max_body
        self.check_host = check_host
        self.error_page = error_page

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope.get("headers", [])}

        async def send_secured(message: Message) -> None:
            if message["type"] == "http.response.start":
                have = {k.lower() for k, _ in message.get("headers", [])}
                extra = [(k, v) for k, v in SECURITY_HEADERS if k not in have]
                if b"cache-control" not in have:
                    extra.append((b"cache-control", b"no-store"))
                message["headers"] = [*message.get("headers", []), *extra]
            await send(message)

        if self.check_host and not is_loopback(_host_name(headers.get("host", ""))):
            await self._error(scope, send_secured, 400, "requests must name this machine (Host header)")
            return
        if self.token is not None:
            query = parse_qsl(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True)
            given = [v for k, v in query if k == "token"]
            if given:
                if not self._valid(given[-1]):
                    await self._error(scope, send_secured, 401, "wrong token")
                    return
                await _redirect_with_cookie(
                    scope, send_secured, [(k, v) for k, v in query if k != "token"], given[-1]
                )
                return
            if not self._authorised(headers):
                await self._error(scope, send_secured, 401, "this server needs a token: open the link `vadindex serve` "
                             "printed (it ends in ?token=...), or send an X-Token or Authorization: Bearer header")  # fmt: skip
                return
        length = headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > self.max_body):
            await self._error(
                scope, send_secured, 413, f"request body larger than {self.max_body // 2**20} MB"
            )
            return
        received = 0
        started = False

        async def receive_bounded() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body:
                    raise BodyTooLarge(self.max_body)
            return message

        async def send_tracked(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send_secured(message)

        try:
            await self.app(scope, receive_bounded, send_tracked)
        except BodyTooLarge as exc:
            if started:
                raise
            await self._error(scope, send_secured, 413, str(exc.detail))

    async def _error(self, scope: Scope, send: Send, status: int, detail: str) -> None:
        await _error(scope, send, status, detail, self.error_page)

    def _valid(self, candidate: str) -> bool:
        assert self.token is not None
        try:
            given = candidate.encode("utf-8")
        except UnicodeError:
            return False
        return hmac.compare_digest(given, self.token)

    def _authorised(self, headers: dict[str, str]) -> bool:
        """A valid token in the header, a Bearer authorisation or the cookie (each checked in
        constant time; every candidate is checked, so timing says nothing about which was sent)."""
        candidates = [headers.get(HEADER)]
        auth = headers.get("authorization", "")
        if auth[:7].lower() == "bearer ":
            candidates.append(auth[7:].strip())
        candidates.append(_cookie(headers.get("cookie", ""), COOKIE))
        ok = False
        for c in candidates:
            if c is not None:
                ok |= self._valid(c)
        return ok


def _host_name(host: str) -> str:
    """The name part of a ``Host`` header (``[::1]:8000`` -> ``::1``)."""
    host = host.strip()
    if host.startswith("["):
        return host[1 : host.find("]")] if "]" in host else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def _cookie(header: str, name: str) -> str | None:
    for part in header.split(";"):
        key, sep, value = part.strip().partition("=")
        if sep and key == name:
            return value.strip().strip('"')
    return None


def wants_json(scope: Scope) -> bool:
    """True for the API and anything that is not a page (an HTML error page would not help there)."""
    path = scope.get("path", "")
    return path.startswith(("/api/", "/static/", "/openapi")) or path == "/api"


async def _error(
    scope: Scope, send: Send, status: int, detail: str, page: Callable[[int, str], str] | None
) -> None:
    """Answer with ``{"detail": ...}`` (API) or a small HTML page (pages)."""
    if wants_json(scope) or page is None:
        body = json.dumps({"detail": detail}).encode()
        kind = b"application/json"
    else:
        body = page(status, detail).encode()
        kind = b"text/html; charset=utf-8"
    headers = [(b"content-type", kind), (b"content-length", str(len(body)).encode())]
    if status == 401:
        headers.append((b"www-authenticate", b"Bearer"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _redirect_with_cookie(scope: Scope, send: Send, rest: list[tuple[str, str]], token: str) -> None:
    """303 to the same path without ``token=``, setting the token cookie."""
    # One leading slash: "//host" would send the browser to another site.
    path = "/" + quote(scope.get("path", "/")).lstrip("/")
    location = path + ("?" + urlencode(rest) if rest else "")
    cookie = f"{COOKIE}={token}; HttpOnly; SameSite=Strict; Path=/"
    if scope.get("scheme") == "https":
        cookie += "; Secure"
    await send({"type": "http.response.start", "status": 303, "headers": [
        (b"location", location.encode("latin-1", "replace")), (b"set-cookie", cookie.encode()),
        (b"content-length", b"0"),
    ]})  # fmt: skip
    await send({"type": "http.response.body", "body": b""})
