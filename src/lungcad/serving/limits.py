"""Request body size limit, enforced before and while the body is read.

A pure ASGI middleware (no buffering): a request whose Content-Length is over the limit is
answered 413 without reading a byte of its body; a request without one (chunked) is counted as it
streams in and stopped at the first chunk past the limit, so memory never holds more than the
limit plus one chunk.
"""

from __future__ import annotations

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
