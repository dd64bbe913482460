"""``mmsr serve --backend hf`` with the tiny random Qwen2.5-VL checkpoint answers real requests on CPU."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import httpx
import pytest
from PIL import Image

from mmsr_serve.api import Settings, create_app
from tests.api.conftest import data_url, user_with_image
from tests.api.live import mmsr_serve_process

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
    args = ("--backend", "hf", "--model", str(tiny), "--device", "cpu", "--log-level", "warning")
    with mmsr_serve_process(*args) as served:
        body = {"messages": [{"role": "user", "content": "Hi?"}], "max_tokens": 4, "search_mode": "off"}
        response = httpx.post(served.url + "/v1/chat/completions", json=body, timeout=60)
        assert response.status_code == 200, response.text
        assert response.json()["choices"][0]["message"]["content"]
