"""The HTTP protocol the server runs: uvicorn's httptools protocol with a deadline on headers.

uvicorn closes a kept-alive connection that stays idle, but not one that never finishes its
request headers: a few hundred such connections (slowloris) hold as many file descriptors for
ever and make the server unreachable. Here each request's headers must be complete within
``header_timeout_s`` of the connection opening or of the request's first byte; the connection is
closed otherwise. The body has its own inactivity timeout (:mod:`mmsr_serve.api.body`).
Without httptools (it is a dependency on Linux) uvicorn's default protocol runs, unguarded.

The class is module-level so that ``--workers`` can hand it to its processes (uvicorn pickles its
configuration); each worker sets the timeout from its own settings (:func:`guarded_protocol`).
"""

from __future__ import annotations

import asyncio
import importlib.util
from typing import Any

__all__ = ["guarded_protocol", "protocol_options"]

HAVE_HTTPTOOLS = importlib.util.find_spec("httptools") is not None

if HAVE_HTTPTOOLS:
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    class GuardedHttpToolsProtocol(HttpToolsProtocol):
        header_timeout_s = 30.0
        _header_timer: asyncio.TimerHandle | None = None

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._arm()

        def on_message_begin(self) -> None:
            super().on_message_begin()
            self._arm()

        def on_headers_complete(self) -> None:
            self._disarm()
            super().on_headers_complete()

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

        def _arm(self) -> None:
            self._disarm()
            self._header_timer = self.loop.call_later(self.header_timeout_s, self._too_slow)

        def _disarm(self) -> None:
            if self._header_timer is not None:
                self._header_timer.cancel()
                self._header_timer = None

        def _too_slow(self) -> None:
            self._header_timer = None
            if not self.transport.is_closing():
                self.transport.close()


def guarded_protocol(header_timeout_s: float) -> type[asyncio.Protocol] | None:
    """The protocol class for ``uvicorn.run(http=...)``, headers due within ``header_timeout_s``
    (for the whole process), or None where httptools is missing."""
    if not HAVE_HTTPTOOLS:
        return None
    GuardedHttpToolsProtocol.header_timeout_s = header_timeout_s
    return GuardedHttpToolsProtocol


def protocol_options(header_timeout_s: float) -> dict[str, Any]:
    """``uvicorn.run`` options: the guarded protocol where it exists."""
    protocol = guarded_protocol(header_timeout_s)
    return {"http": protocol} if protocol is not None else {}
