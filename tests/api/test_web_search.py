"""Web search through the server: SerpAPI Lens on an uploaded image (published for the provider to
fetch), SerpAPI Google + page reading + an LLM summarizer, costs in the trace and the metrics, the
cache, the public image route and start-up warnings; providers are stand-ins on loopback."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import typer
from PIL import Image
from prometheus_client.parser import text_string_to_metric_families
from typer.testing import CliRunner

from mmsr_serve.api import Settings, create_app
from mmsr_serve.api import cli as api_cli
from mmsr_serve.backends import ScriptedBackend
from mmsr_serve.images import encode_image, load_image
from mmsr_serve.search.publish import PUBLIC_IMAGE_PATH, ImagePublisher
from tests.api.conftest import IMAGE_SEARCH, AppClient, R, data_url, user_with_image
from tests.api.live import serve_in_thread
from tests.search.standins import FACTS, KEYS, StandIn

PRICES = {"serpapi": 0.015, "serpapi-lens": 0.02, "summarizer": {"per_1k_tokens": 0.001}}


@pytest.fixture
def standin() -> Iterator[StandIn]:
    state = StandIn()
    with serve_in_thread(state.app) as live:
        state.base = live.url
        yield state


def web_settings(standin: StandIn, tmp_path: Path, **overrides: Any) -> Settings:
    env = {
        "SERPAPI_API_KEY": KEYS["serpapi"],
        "SERPAPI_BASE_URL": standin.base,
        "MMSR_SUMMARIZER_API_KEY": KEYS["llm"],
    }
    values: dict[str, Any] = {
        "model": "mmsr-test",
        "image_search": "serpapi-lens",
        "text_search": "serpapi",
        "summarizer_base_url": f"{standin.base}/v1",
        "summarizer_model": "stand-in",
        "fetch_allow": ["127.0.0.1"],
        "search_cache": tmp_path / "cache.sqlite",
        "search_prices": PRICES,
        "public_base_url": "http://placeholder.invalid",
        **overrides,
    }
    return Settings.load(env=env, **values)


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


@pytest.mark.slow
def test_lens_then_web_pipeline_through_the_server(
    standin: StandIn, tmp_path: Path, live_app: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    turns = [
        IMAGE_SEARCH,
        f"{R}<text_search>glass heron sculptor</text_search>",
        f"{R}<answer>Ines Dubrovka</answer>",
    ]
    backend = ScriptedBackend(turns * 2)
    app = create_app(web_settings(standin, tmp_path), backend=backend)
    server = live_app(app)
    publisher: ImagePublisher = app.state.publisher
    publisher.base_url = server.url  # known only once serving: where the stand-in fetches from
    image = Image.new("RGB", (320, 240), (30, 120, 200))
    body = {"messages": [user_with_image("Who made this?", data_url(image))], "return_trace": True}
    with httpx.Client(base_url=server.url, timeout=30) as client:
        first = client.post("/v1/chat/completions", json=body)
        assert first.status_code == 200, first.text
        data = first.json()
        assert data["choices"][0]["message"]["content"] == "Ines Dubrovka"
        steps = [s for s in data["trace"]["steps"] if s["type"] == "search"]
        assert [(s["kind"], s["provider"], s["error"], len(s["results"])) for s in steps] == [
            ("image", "serpapi-lens", None, 5),
            ("text", "serpapi+local+llm:stand-in", None, 5),
        ]
        # Google Lens fetched the upload from the public route, which forgot it afterwards
        assert len(standin.lens_images) == 1 and standin.lens_images[0][:2] == b"\xff\xd8"
        assert len(publisher) == 0
        # the model saw thumbnails, then numbered summaries with their links
        image_turn, text_turn = backend.requests[1].messages[-1], backend.requests[2].messages[-1]
        assert len(image_turn.images) == 4 and "1. Title: Match 1" in image_turn.text
        page1 = f"{standin.base}/pages/p1.html"
        assert f"1. Page 1 about the heron ({page1})\nSummary of 'Page 1 about the heron'" in text_turn.text
        assert (
            "for 'glass heron sculptor': " + FACTS[0] in text_turn.text and "\n\n5. Page 5" in text_turn.text
        )
        cost = data["trace"]["cost"]
        assert cost["calls"]["serpapi-lens"] == {"calls": 1, "failed": 0, "tokens": 0, "usd": 0.02}
        assert cost["calls"]["serpapi"]["usd"] == 0.015
        assert cost["calls"]["summarizer"] == {"calls": 5, "failed": 0, "tokens": 1700, "usd": 0.0017}
        assert cost["estimated_usd"] == pytest.approx(0.0367)
        m = samples(client.get("/metrics").text)
        assert m["mmsr_search_provider_calls_total", (("outcome", "ok"), ("provider", "summarizer"))] == 5
        assert m["mmsr_search_cost_usd_total", (("provider", "serpapi-lens"),)] == pytest.approx(0.02)
        assert m["mmsr_search_provider_tokens_total", (("provider", "summarizer"),)] == 1700
        # the same request again: both searches from the cache, nothing paid
        before = len(standin.requests)
        again = client.post("/v1/chat/completions", json=body).json()
        cached = [s["cached"] for s in again["trace"]["steps"] if s["type"] == "search"]
        assert cached == [True, True] and len(standin.requests) == before
        assert again["trace"]["cost"] == {"estimated_usd": 0.0, "calls": {}}
    for secret in (KEYS["serpapi"], KEYS["llm"]):
        assert secret not in caplog.text and secret not in first.text


async def test_provider_failures_reach_the_model_without_the_key(
    standin: StandIn, tmp_path: Path, app_client: AppClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    standin.fail("serpapi", "echo-key")
    backend = ScriptedBackend([f"{R}<text_search>heron</text_search>", f"{R}<answer>unknown</answer>"])
    settings = web_settings(standin, tmp_path, image_search="", search_cache="off")
    client = app_client(backend, **settings.model_dump(exclude_unset=True))
    body = {"messages": [{"role": "user", "content": "Who made the heron?"}], "return_trace": True}
    response = await client.post("/v1/chat/completions", json=body)
    assert response.status_code == 200, response.text
    (step,) = [s for s in response.json()["trace"]["steps"] if s["type"] == "search"]
    assert step["error"].startswith("serpapi: request refused, HTTP 400: invalid request, key *** is not")
    assert "The web search failed: serpapi: request refused" in backend.requests[1].messages[-1].text
    assert KEYS["serpapi"] not in response.text + caplog.text


async def test_the_public_route_needs_no_key_and_forgets(app_client: AppClient) -> None:
    client = app_client(ScriptedBackend(), api_keys=["k"], public_base_url="https://gw.example")
    publisher: ImagePublisher = client.app.state.publisher  # type: ignore[attr-defined]
    image = await load_image(encode_image(Image.new("RGB", (8, 8))))
    async with publisher.published(image) as url:
        path = url.removeprefix("https://gw.example")
        response = await client.get(path)
        assert response.status_code == 200 and response.headers["content-type"] == "image/jpeg"
        assert response.headers["cache-control"] == "no-store"
    assert (await client.get(path)).status_code == 404
    assert (await client.get(f"{PUBLIC_IMAGE_PATH}not-a-token.jpg")).status_code == 404
    assert (await client.get("/v1/models")).status_code == 401  # everything else still needs the key


def test_start_up_warnings(caplog: pytest.LogCaptureFixture, tmp_path: Path) -> None:
    caplog.set_level(logging.WARNING, logger="mmsr.search")
    settings = Settings.load(
        env={"SERPAPI_API_KEY": KEYS["serpapi"]}, model="m", image_search="serpapi-lens", search_cache="off"
    )
    create_app(settings, backend=ScriptedBackend())
    assert "serpapi-lens without --public-base-url" in caplog.text
    assert "without a cache" in caplog.text


def test_serve_flags_configure_the_providers(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    seen: dict[str, Any] = {}
    monkeypatch.setattr("uvicorn.run", lambda app, **kw: seen.update(app=app))
    for name in [k for k in os.environ if k.startswith(("MMSR_", "SERPAPI_"))]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("SERPAPI_API_KEY", KEYS["serpapi"])
    cli = typer.Typer()
    cli.command()(api_cli.serve)
    args = ["--model", "m", "--image-search", "serpapi-lens", "--text-search", "serpapi,duckduckgo"]
    args += ["--page-reader", "none", "--search-cache", str(tmp_path / "c.sqlite")]
    result = CliRunner().invoke(cli, [*args, "--public-base-url", "https://gw.example"])
    assert result.exit_code == 0, result.output
    tools = seen["app"].state.runtime.agent.tools
    assert (tools.image.name, tools.text.name) == ("serpapi-lens", "serpapi,duckduckgo")
    bad = CliRunner().invoke(cli, ["--model", "m", "--text-search", "bing"])
    assert bad.exit_code != 0 and "'bing'" in bad.output


async def test_streamed_traces_carry_the_cost(app_client: AppClient) -> None:
    client = app_client(ScriptedBackend([f"{R}<answer>x</answer>"]))
    body = {"messages": [{"role": "user", "content": "Q?"}], "stream": True, "return_trace": True}
    response = await client.post("/v1/chat/completions", json=body)
    chunks = [json.loads(line[6:]) for line in response.text.splitlines() if line.startswith("data: {")]
    traces = [c["trace"] for c in chunks if c.get("trace")]
    assert len(traces) == 1 and traces[0]["cost"] == {"estimated_usd": 0.0, "calls": {}}
