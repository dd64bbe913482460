"""Serve an ASGI app with uvicorn on 127.0.0.1 (a random free port) in a background thread."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import uvicorn


@dataclass
class LiveServer:
    url: str
    server: uvicorn.Server


@contextlib.contextmanager
def serve_in_thread(app: Any, *, start_timeout_s: float = 10.0, **options: Any) -> Iterator[LiveServer]:
    """``options``: more ``uvicorn.Config`` arguments (the server's own protocol class, say)."""
    # IPPROTO_TCP, not the default 0: asyncio turns Nagle's algorithm off only on sockets that say they
    # are TCP, and without that every answer on a kept-alive connection waits ~40 ms for a delayed ACK.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, log_level="warning", lifespan="on", timeout_graceful_shutdown=2, **options)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + start_timeout_s
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.01)
    try:
        yield LiveServer(f"http://127.0.0.1:{port}", server)
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


@dataclass
class ServeProcess:
    url: str
    proc: Any  # subprocess.Popen[bytes]


@contextlib.contextmanager
def mmsr_serve_process(
    *args: str, ready: str = "/ready", start_timeout_s: float = 90.0
) -> Iterator[ServeProcess]:
    """``mmsr serve ARGS`` in a subprocess on a free loopback port, once ``ready`` answers 200
    (its environment without ``MMSR_*`` and Prometheus variables). Terminated, then killed, at exit."""
    import os
    import subprocess
    import sys

    import httpx

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    cmd = [sys.executable, "-m", "mmsr_serve.cli", "serve", "--port", str(port), *args]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MMSR_", "PROMETHEUS_"))}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + start_timeout_s
        while True:
            assert proc.poll() is None, proc.stdout.read().decode() if proc.stdout else ""
            try:
                if httpx.get(url + ready, timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, f"mmsr serve did not answer {ready}"
            time.sleep(0.2)
        yield ServeProcess(url, proc)
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
