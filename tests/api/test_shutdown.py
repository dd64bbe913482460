"""SIGTERM drains: requests in flight get --shutdown-timeout to finish, then streams end with an
error event and [DONE], and the process exits (issue 13, item 9)."""

from __future__ import annotations

import json
import signal

import httpx
import pytest

from tests.api.live import mmsr_serve_process
from tests.api.model_server import BLOCK, MODEL, ModelServer


@pytest.mark.slow
def test_sigterm_ends_a_hung_stream_with_an_error_event_and_done(model_server: ModelServer) -> None:
    args = ("--backend", "openai", "--model", MODEL, "--backend-url", model_server.url)
    with mmsr_serve_process(
        *args, "--search-cache", "off", "--shutdown-timeout", "1", ready="/health"
    ) as served:
        url, proc = served.url, served.proc
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
