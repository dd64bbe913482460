"""SIGTERM drains: requests in flight get --shutdown-timeout to finish, then streams end with an
error event and [DONE], and the process exits (issue 13, item 9)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time

import httpx
import pytest

from tests.api.model_server import BLOCK, MODEL, ModelServer


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.slow
def test_sigterm_ends_a_hung_stream_with_an_error_event_and_done(model_server: ModelServer) -> None:
    port = _free_port()
    cmd = [sys.executable, "-m", "mmsr_serve.cli", "serve", "--backend", "openai", "--model", MODEL]
    cmd += ["--backend-url", model_server.url, "--port", str(port), "--search-cache", "off"]
    cmd += ["--shutdown-timeout", "1", "--log-level", "warning"]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MMSR_", "PROMETHEUS_"))}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, proc.stdout.read().decode() if proc.stdout else ""
            try:
                if httpx.get(url + "/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "mmsr serve did not start"
            time.sleep(0.2)
        model_server.enqueue(BLOCK)  # the model starts a turn, then hangs
        body = {"model": MODEL, "messages": [{"role": "user", "content": "Q?"}], "stream": True}
        events: list[str] = []
        with httpx.stream("POST", url + "/v1/chat/completions", json=body, timeout=30) as response:
            assert response.status_code == 200
            for line in response.iter_lines():
                if line.startswith("data: "):
                    events.append(line[6:])
                    if len(events) == 1:  # the role chunk; the model is in its turn (its "<reason>")
                        assert model_server.blocked.wait(5)
                        proc.send_signal(signal.SIGTERM)
        assert events[-1] == "[DONE]"
        error = json.loads(events[-2])["error"]
        assert error["code"] == "shutting_down" and "shutting down" in error["message"]
        # it exits by itself, long before --request-timeout (uvicorn re-raises the signal it caught)
        assert proc.wait(timeout=20) in (0, -signal.SIGTERM)
        assert model_server.cancelled.wait(5)  # and the model server's generation was stopped
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
