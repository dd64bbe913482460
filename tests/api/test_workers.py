"""``mmsr serve --workers N``: several processes on one port, one set of metrics, shared images."""

from __future__ import annotations

import re
import time
from pathlib import Path

import httpx
import pytest

from mmsr_serve.api.settings import Settings
from mmsr_serve.api.workers import serve_workers
from mmsr_serve.errors import ConfigError
from tests.api.live import mmsr_serve_process
from tests.api.model_server import MODEL, ModelServer


def test_the_in_process_backend_is_refused() -> None:
    settings = Settings(backend="hf", model="some/checkpoint", workers=2)
    with pytest.raises(ConfigError, match="--backend openai"):
        serve_workers(settings, None, {})


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                found.append(int(entry.name))
    return found


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc").exists(), reason="counts worker processes through /proc")
def test_two_workers_serve_one_port_and_report_one_set_of_metrics(model_server: ModelServer) -> None:
    args = ("--workers", "2", "--backend", "openai", "--backend-url", model_server.url, "--model", MODEL)
    with mmsr_serve_process(*args, "--search-cache", "off", "--log-level", "warning") as served:
        url, proc = served.url, served.proc
        deadline = time.monotonic() + 60
        while len(_children(proc.pid)) < 2:
            assert time.monotonic() < deadline, "the workers did not start"
            time.sleep(0.2)
        workers = _children(proc.pid)
        body = {"model": MODEL, "messages": [{"role": "user", "content": "Hi?"}], "search_mode": "off"}
        sent = 16
        model_server.enqueue(*["Hello there."] * sent)
        for _ in range(sent):  # a new connection each: the kernel spreads them over the workers
            with httpx.Client(timeout=20) as client:
                assert client.post(url + "/v1/chat/completions", json=body).status_code == 200
        counts = set()
        for _ in range(6):  # whichever worker answers the scrape reports every worker's requests
            with httpx.Client(timeout=20) as client:
                text = client.get(url + "/metrics").text
            found = re.search(r'mmsr_requests_total\{path="/v1/chat/completions",status="200"\} (\S+)', text)
            assert found is not None, text[:2000]
            counts.add(float(found.group(1)))
            assert re.search(r"^mmsr_requests_in_flight 0\.0$", text, re.M)
        assert counts == {float(sent)}
        assert len(workers) >= 2 and proc.poll() is None
