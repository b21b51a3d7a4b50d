"""Limits on the request body, enforced while it is read: its size and the time it takes.

Pure ASGI middlewares (no buffering). :class:`BodySizeLimitMiddleware`: a request whose
Content-Length is over the limit is answered 413 without reading a byte of its body; a request
without one (chunked) is counted as it streams in and stopped at the first chunk past the limit,
so memory never holds more than the limit plus one chunk. :class:`BodyTimeoutMiddleware`: a body
that has not fully arrived within the timeout (a client that stalls part-way, holding a
connection and a parser open) is answered 408 and its connection closed.
"""

from __future__ import annotations

import asyncio
import time

from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send


def too_large_message(limit: int) -> str:
    return (f"upload too large: the limit is {limit / (1024 * 1024):g} MB per request "
            "(the server's --max-upload-mb); send a smaller file")


class BodySizeLimitMiddleware:
    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None and declared > self.max_bytes:
            response = JSONResponse({"error": too_large_message(self.max_bytes)}, status_code=413,
                                    headers={"Connection": "close"})
            await response(scope, receive, send)
            return

        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    # FastAPI re-raises an HTTPException met while parsing the body, and the app's
                    # handler turns it into the JSON error.
                    raise HTTPException(413, too_large_message(self.max_bytes))
            return message

        await self.app(scope, limited_receive, send)


def _content_length(scope: Scope) -> int | None:
    for key, value in scope.get("headers", []):
        if key == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


def timeout_message(timeout_s: float) -> str:
    return (f"upload timed out: the request body took longer than {timeout_s:g} s to arrive "
            "(the server's --upload-timeout); send it again, or in one go")


class BodyTimeoutMiddleware:
    def __init__(self, app: ASGIApp, timeout_s: float) -> None:
        self.app = app
        self.timeout_s = timeout_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        deadline = time.monotonic() + self.timeout_s
        complete = False

        def too_slow() -> HTTPException:
            # Raised inside the app's body parsing, like the 413 above; the rest of the body is
            # never read, so the connection cannot be reused.
            return HTTPException(408, timeout_message(self.timeout_s),
                                 headers={"Connection": "close"})

        async def timed_receive() -> Message:
            nonlocal complete
            if complete:  # the body is in: what follows (a disconnect) may take any time
                return await receive()
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise too_slow()
            try:
                message = await asyncio.wait_for(receive(), remaining)
            except asyncio.TimeoutError:
                raise too_slow() from None
            if message["type"] != "http.request" or not message.get("more_body", False):
                complete = True
            elif time.monotonic() > deadline:
                raise too_slow()
            return message

        await self.app(scope, timed_receive, send)
