"""Running a stand-in with uvicorn: in a background thread (:func:`serve_standin`) or in the
foreground (:func:`serve_forever`), on the fastest event loop and HTTP parser installed."""

from __future__ import annotations

import contextlib
import importlib.util
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import uvicorn

__all__ = ["base_url", "bind", "serve_forever", "serve_standin", "uvicorn_config"]


def uvicorn_config(app: Any, **overrides: Any) -> uvicorn.Config:
    """Quiet, no access log, uvloop and httptools when they are importable (asyncio and h11 else)."""
    options: dict[str, Any] = {
        "log_level": "warning",
        "access_log": False,
        "lifespan": "on",
        "timeout_graceful_shutdown": 2,
        "loop": "uvloop" if importlib.util.find_spec("uvloop") else "asyncio",
        "http": "httptools" if importlib.util.find_spec("httptools") else "h11",
    }
    return uvicorn.Config(app, **{**options, **overrides})


def bind(host: str, port: int) -> socket.socket:
    """A listening-ready TCP socket on ``host:port`` (``port`` 0: a free one).

    Made with ``IPPROTO_TCP`` spelled out: asyncio turns Nagle's algorithm off only on sockets whose
    ``proto`` says TCP, and the accepted connections inherit it. With the default ``proto`` of 0,
    every small reply waits for the client's delayed ACK (about 40 ms on Linux).
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    return sock


def base_url(sock: socket.socket) -> str:
    """``http://HOST:PORT`` of a bound socket (an IPv6 host in brackets)."""
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


@contextlib.contextmanager
def serve_standin(
    app: Any, host: str = "127.0.0.1", port: int = 0, *, start_timeout_s: float = 10.0
) -> Iterator[str]:
    """Serve ``app`` in a background thread; yields its base URL, stops it on exit."""
    sock = bind(host, port)
    server = uvicorn.Server(uvicorn_config(app))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + start_timeout_s
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the stand-in did not start within {start_timeout_s:g} s")
            time.sleep(0.005)
        yield base_url(sock)
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


def serve_forever(app: Any, host: str, port: int, announce: Callable[[str], None]) -> None:
    """Serve ``app`` in this thread until interrupted; ``announce(base_url)`` once it listens."""
    sock = bind(host, port)
    server = uvicorn.Server(uvicorn_config(app))
    url = base_url(sock)

    def watch() -> None:
        while not server.started and not server.should_exit:
            time.sleep(0.01)
        if server.started:
            announce(url)

    threading.Thread(target=watch, daemon=True).start()
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()
