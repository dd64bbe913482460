"""``--standins``: a whole deployment on loopback, each server in its own process.

:func:`standin_stack` starts the model stand-in, the web stand-in (SearXNG-shaped) and an
``mmsr serve`` in front of them (``--backend openai`` on the model stand-in, text search on the
web stand-in, pages read from it through the safe fetcher, image search on a local index), waits
until each answers, and stops them all on exit. Separate processes, so that the bench's client,
the gateway and the stand-ins do not share one interpreter lock: on a laptop the figures then
show the gateway's own cost.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx

__all__ = ["Stack", "StandinOptions", "standin_stack"]

_MMSR = [sys.executable, "-m", "mmsr_serve.cli"]


@dataclass(frozen=True)
class StandinOptions:
    index: Path
    """The local corpus folder the gateway's image search uses."""
    model_latency: str = "50ms"
    tokens_per_s: float = 0.0
    mix: str = "direct=1,image=1,image_text=1"
    web_latency: str = "100ms"
    page_latency: str = "0"
    seed: int = 0
    search_cache: str = "off"
    config: Path | None = None
    """The agent configuration file the gateway reads (``--config``); the baseline reads it too."""
    serve_args: tuple[str, ...] = ()
    """More ``mmsr serve`` flags (``--max-concurrent-requests``, ``--workers`` ...)."""
    model_faults: str = ""
    """Faults of the model stand-in (mmsr_bench/standins/faults.py); none by default."""
    web_faults: str = ""
    hang_s: float = 30.0
    """How long both stand-ins' hang faults hold an answer."""


@dataclass(frozen=True)
class Stack:
    server_url: str
    """``mmsr serve``."""
    model_url: str
    """The model stand-in (OpenAI base URL, ending in ``/v1``)."""
    web_url: str
    model_name: str = "mmsr-standin"
    pids: dict[str, int] = field(default_factory=dict)
    """``model``, ``web``, ``server``: the process of each."""

    def agent_settings(self) -> dict[str, object]:
        """The agent configuration the gateway was started with, for the baseline's tools."""
        return {
            "backend": "openai",
            "backend_urls": [self.model_url],
            "model": self.model_name,
            "text_search": ["searxng"],
            "fetch_allow": ["127.0.0.1"],
        }


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait(url: str, process: subprocess.Popen[bytes], log: Path, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(
                f"{url} exited with {process.returncode}:\n{log.read_text(errors='replace')[-2000:]}"
            )
        try:
            if httpx.get(url, timeout=1.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    raise RuntimeError(
        f"{url} did not answer within {timeout_s:g} s:\n{log.read_text(errors='replace')[-2000:]}"
    )


@contextlib.contextmanager
def standin_stack(options: StandinOptions, *, start_timeout_s: float = 60.0) -> Iterator[Stack]:
    ports = [_free_port() for _ in range(3)]
    model_url, web_url, server_url = (f"http://127.0.0.1:{p}" for p in ports)
    with tempfile.TemporaryDirectory(prefix="mmsr-bench-") as tmp, contextlib.ExitStack() as stack:
        env = {**os.environ, "SEARXNG_BASE_URL": web_url, "MMSR_FETCH_ALLOW": "127.0.0.1"}
        env.pop("MMSR_CONFIG", None)
        o = options
        model = ["model", "--port", str(ports[0]), "--latency", o.model_latency, "--seed", str(o.seed)]
        model += ["--tokens-per-s", str(o.tokens_per_s), "--mix", o.mix]
        model += ["--faults", o.model_faults, "--hang-s", str(o.hang_s)]
        web = ["web", "--port", str(ports[1]), "--latency", o.web_latency, "--seed", str(o.seed)]
        web += ["--page-latency", o.page_latency, "--faults", o.web_faults, "--hang-s", str(o.hang_s)]
        serve = ["serve", "--port", str(ports[2]), "--backend", "openai", "--backend-url", model_url + "/v1"]
        serve += ["--model", "mmsr-standin", "--index", str(o.index), "--image-search", "local"]
        serve += ["--text-search", "searxng", "--search-cache", o.search_cache, *o.serve_args]
        if o.config is not None:
            serve += ["--config", str(o.config)]
        commands: list[tuple[str, Sequence[str]]] = [
            (model_url + "/health", [*_MMSR, "bench", "standin", *model]),
            (web_url + "/health", [*_MMSR, "bench", "standin", *web]),
            (server_url + "/health", [*_MMSR, *serve]),
        ]
        pids = {}
        for name, (health, command) in zip(("model", "web", "server"), commands, strict=True):
            log = Path(tmp) / f"{name}.log"
            out = stack.enter_context(log.open("wb"))
            process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env)
            stack.callback(_stop, process)
            pids[name] = process.pid
            _wait(health, process, log, start_timeout_s)
        yield Stack(server_url, model_url + "/v1", web_url, pids=pids)


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
