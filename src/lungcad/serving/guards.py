"""Guards against requests from other sites, and the security headers of every answer.

:class:`RequestGuardMiddleware` answers only the host names the server is configured for (the
bind address, localhost, 127.0.0.1, [::1] and ``--allowed-host``): a page that rebinds its own
DNS name to 127.0.0.1 reaches the server under that name, and is refused. It also refuses POSTs
(and any other method that changes something) that a browser marks as coming from another
origin: an ``Origin`` header other than the server's own, or ``Sec-Fetch-Site`` other than
``same-origin``/``none``. A request without either (curl, scripts) is not a browser's
cross-site request and passes.
"""

from __future__ import annotations

import asyncio
import time
from typing import Iterable
from urllib.parse import urlsplit

from starlette.datastructures import Headers
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

LOOPBACK_NAMES = ("localhost", "127.0.0.1", "[::1]")
_ANY_ADDRESS = ("0.0.0.0", "[::]", "")
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_SAME_SITE_FETCHES = frozenset({"same-origin", "none"})
_DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}
# A refused request's body is read (and dropped) up to this much, for this long, before the
# answer: closing a connection with unread data in it resets it, and the client would see a
# broken connection instead of the answer.
_DRAIN_BYTES = 1024 * 1024
_DRAIN_SECONDS = 2.0


def host_name(value: str) -> str:
    """A host name as compared here: lower case, an IPv6 address in brackets, no trailing dot."""
    value = value.strip().lower().rstrip(".")
    if ":" in value and not value.startswith("["):
        value = f"[{value}]"
    return value


def split_host(header: str | None) -> tuple[str, int | None] | None:
    """``host[:port]`` (a Host header or an origin's netloc) as (name, port); None if malformed."""
    if not header:
        return None
    header = header.strip()
    if header.startswith("["):
        end = header.find("]")
        if end < 0:
            return None
        name, rest = header[:end + 1], header[end + 1:]
    else:
        name, _, port_text = header.partition(":")
        rest = f":{port_text}" if port_text else ""
    if rest and not (rest.startswith(":") and rest[1:].isdigit()):
        return None
    if not name or any(c.isspace() or c in "/\\@?#" for c in name):
        return None
    return host_name(name), int(rest[1:]) if rest else None


def allowed_host_names(bind_host: str, extra: Iterable[str]) -> frozenset[str]:
    names = {*LOOPBACK_NAMES, *(host_name(h) for h in extra)}
    if host_name(bind_host) not in _ANY_ADDRESS:
        names.add(host_name(bind_host))
    return frozenset(names)


class RequestGuardMiddleware:
    def __init__(self, app: ASGIApp, allowed_hosts: Iterable[str]) -> None:
        self.app = app
        self.allowed = frozenset(allowed_hosts)
        self.allow_any = "*" in self.allowed

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        refusal = self._host_refusal(headers.get("host"))
        if refusal is None and scope.get("method", "GET") not in _SAFE_METHODS:
            refusal = self._origin_refusal(headers, scope.get("scheme", "http"))
        if refusal is None:
            await self.app(scope, receive, send)
            return
        status, message = refusal
        await _drain(receive)
        response = JSONResponse({"error": message}, status_code=status,
                                headers={"Connection": "close"})
        await response(scope, receive, send)

    def _host_refusal(self, header: str | None) -> tuple[int, str] | None:
        parsed = split_host(header)
        if parsed is not None and (self.allow_any or parsed[0] in self.allowed):
            return None
        shown = "none" if header is None else repr(header[:100])
        return 400, (f"host name {shown} is not one this server answers to ("
                     f"{', '.join(sorted(self.allowed))}); use one of those, or start the "
                     "server with --allowed-host NAME for a name it should answer to")

    def _origin_refusal(self, headers: Headers, scheme: str) -> tuple[int, str] | None:
        own = headers.get("host", "")
        origin = headers.get("origin")
        if origin is not None and not same_origin(origin, own, scheme):
            return 403, (f"cross-origin request refused: Origin {origin[:100]!r} is not this "
                         f"server ({own[:100]!r}); the API takes POSTs from its own page and "
                         "from clients that send no Origin (curl, scripts), not from other sites")
        site = headers.get("sec-fetch-site")
        if site is not None and site.lower() not in _SAME_SITE_FETCHES:
            return 403, (f"cross-origin request refused: the browser marks it {site[:40]!r} "
                         "(Sec-Fetch-Site); the API takes POSTs from its own page and from "
                         "clients such as curl or scripts, not from other sites")
        return None


async def _drain(receive: Receive) -> None:
    """Read and drop what the client sends, up to a small bound in size and time."""
    received, deadline = 0, time.monotonic() + _DRAIN_SECONDS
    while received <= _DRAIN_BYTES:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return
        try:
            message = await asyncio.wait_for(receive(), remaining)
        except asyncio.TimeoutError:
            return
        if message["type"] != "http.request" or not message.get("more_body", False):
            return
        received += len(message.get("body", b""))


def same_origin(origin: str, host_header: str, scheme: str) -> bool:
    """Whether ``origin`` (scheme://host[:port]) names the host and port the request went to."""
    try:
        parts = urlsplit(origin.strip())
    except ValueError:
        return False
    if parts.scheme not in _DEFAULT_PORTS or parts.path not in ("", "/") or parts.query:
        return False
    theirs, ours = split_host(parts.netloc), split_host(host_header)
    if theirs is None or ours is None:
        return False
    their_port = theirs[1] or _DEFAULT_PORTS[parts.scheme]
    our_port = ours[1] or _DEFAULT_PORTS.get(scheme, 80)
    return theirs[0] == ours[0] and their_port == our_port


_PAGE_CSP = (b"default-src 'self'; img-src 'self' data: blob:; script-src 'self'; "
             b"style-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'none'; "
             b"frame-ancestors 'none'; form-action 'self'")


class SecurityHeadersMiddleware:
    """nosniff everywhere; a strict Content-Security-Policy on the page and its assets (the
    Swagger page needs its inline script, so it gets none)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        strict = not scope["path"].startswith("/docs")

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers.append((b"x-content-type-options", b"nosniff"))
                headers.append((b"referrer-policy", b"no-referrer"))
                if strict:
                    headers.append((b"content-security-policy", _PAGE_CSP))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)
