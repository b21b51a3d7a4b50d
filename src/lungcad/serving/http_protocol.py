"""A deadline on request headers, which uvicorn lacks.

uvicorn (0.55) times out a connection only while it is idle between requests
(``timeout_keep_alive``, re-armed after each response): a client that opens a connection and
sends nothing, or half a request line and then stops, holds its socket and parser open for
ever (uvicorn issue #157 lists ``--timeout-request-start`` as not done). A few hundred such
clients use up the process's open files (Slowloris). Request bodies are bounded in time by
:class:`lungcad.serving.limits.BodyTimeoutMiddleware`, but an ASGI middleware runs only once
the headers are in.

:func:`header_timeout_protocol` wraps uvicorn's HTTP protocol class (httptools where installed,
as uvicorn's ``auto`` picks, else h11): a timer is armed when a connection opens and when the
first bytes of a further request arrive on it, and disarmed once that request's headers are
complete (uvicorn then starts a request-response cycle). When it fires, the connection is closed.
Responses and bodies are never cut by it.
"""

from __future__ import annotations

import asyncio
import logging

log = logging.getLogger("lungcad.serving")


def base_protocol(kind: str = "auto") -> type:
    """uvicorn's HTTP protocol class: ``httptools``, ``h11`` or ``auto`` (httptools where
    installed)."""
    if kind in ("auto", "httptools"):
        try:
            from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
        except ImportError:
            if kind == "httptools":
                raise
        else:
            return HttpToolsProtocol
    from uvicorn.protocols.http.h11_impl import H11Protocol

    return H11Protocol


def header_timeout_protocol(timeout_s: float, kind: str = "auto") -> type:
    """A subclass of uvicorn's HTTP protocol that closes a connection whose request headers
    have not all arrived ``timeout_s`` seconds after it opened (or after the first byte of a
    further request on it). Pass it to uvicorn as ``http=``."""
    base = base_protocol(kind)

    class HeaderTimeoutProtocol(base):  # type: ignore[misc, valid-type]
        header_timeout_s = float(timeout_s)

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            self._header_timer: asyncio.TimerHandle | None = None
            self._headers_of = None  # the request-response cycle whose headers were seen
            super().connection_made(transport)
            self._arm_header_timer()

        def data_received(self, data: bytes) -> None:
            cycle = getattr(self, "cycle", None)
            if self._header_timer is None and (cycle is None or cycle.response_complete):
                self._arm_header_timer()  # the first bytes of a further request
            super().data_received(data)
            cycle = getattr(self, "cycle", None)
            if cycle is not None and cycle is not self._headers_of:
                self._headers_of = cycle  # its headers are complete
                self._disarm_header_timer()

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm_header_timer()
            super().connection_lost(exc)

        def _arm_header_timer(self) -> None:
            self._disarm_header_timer()
            self._header_timer = self.loop.call_later(self.header_timeout_s,
                                                      self._header_timeout)

        def _disarm_header_timer(self) -> None:
            timer = getattr(self, "_header_timer", None)
            if timer is not None:
                timer.cancel()
                self._header_timer = None

        def _header_timeout(self) -> None:
            self._header_timer = None
            if not self.transport.is_closing():
                client = self.client or ("?", 0)
                log.warning("closed a connection from %s:%s: its request headers did not "
                            "arrive within %g s (the server's --header-timeout)", client[0],
                            client[1], self.header_timeout_s)
                self.transport.close()

    HeaderTimeoutProtocol.__name__ = f"HeaderTimeout{base.__name__}"
    return HeaderTimeoutProtocol


def server_options(settings) -> dict:
    """uvicorn options for a :class:`~lungcad.serving.settings.ServeSettings`: the protocol with
    its header deadline (``lungcad serve`` and the tests' live servers run with these)."""
    return {"http": header_timeout_protocol(settings.header_timeout_s)}
