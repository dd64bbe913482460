"""``mmsr serve --backend hf`` with the tiny random Qwen2.5-VL checkpoint answers real requests on CPU."""

from __future__ import annotations

import importlib.util
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from PIL import Image

from mmsr_serve.api import Settings, create_app
from tests.api.conftest import data_url, user_with_image

if importlib.util.find_spec("transformers") is None:  # not importorskip: importing it takes seconds
    pytest.skip("transformers is not installed", allow_module_level=True)


async def test_in_process_hf_backend_answers(tiny: Path) -> None:
    app = create_app(Settings(backend="hf", model=str(tiny), device="cpu"))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://mmsr.test", timeout=60) as client:
        image = data_url(Image.new("RGB", (64, 48), "navy"))
        body = {"messages": [user_with_image("What colour?", image)], "search_mode": "off", "max_tokens": 6}
        response = await client.post("/v1/chat/completions", json=body)
        assert response.status_code == 200, response.text
        data = response.json()
        assert data["model"] == tiny.name
        assert data["choices"][0]["message"]["content"]  # random weights, but some text
        assert data["usage"]["completion_tokens"] <= 6 and data["usage"]["prompt_tokens"] > 0
        body = {"messages": [{"role": "user", "content": "Hi?"}], "max_tokens": 4, "max_turns": 1}
        data = (await client.post("/v1/chat/completions", json=body)).json()
        assert data["choices"][0]["finish_reason"] in ("length", "max_turns", "stop")


@pytest.mark.slow
def test_mmsr_serve_subprocess(tiny: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    cmd = [sys.executable, "-m", "mmsr_serve.cli", "serve", "--backend", "hf", "--model", str(tiny)]
    cmd += ["--device", "cpu", "--port", str(port), "--log-level", "warning"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("MMSR_")}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 90
        while True:
            assert proc.poll() is None, proc.stdout.read().decode() if proc.stdout else ""
            try:
                if httpx.get(url + "/ready", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "mmsr serve did not become ready"
            time.sleep(0.2)
        body = {"messages": [{"role": "user", "content": "Hi?"}], "max_tokens": 4, "search_mode": "off"}
        response = httpx.post(url + "/v1/chat/completions", json=body, timeout=60)
        assert response.status_code == 200, response.text
        assert response.json()["choices"][0]["message"]["content"]
    finally:
        proc.terminate()
        proc.wait(timeout=20)
