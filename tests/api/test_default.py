"""``mmsr serve`` with no arguments: the packaged demo checkpoint over the demo world."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import httpx
import pytest
import typer
from PIL import Image
from typer.testing import CliRunner

from mmsr_serve import default_model
from mmsr_serve.api import Settings, create_app
from mmsr_serve.api import cli as api_cli
from mmsr_serve.errors import ConfigError
from tests.api.conftest import data_url, user_with_image

needs_checkpoint = pytest.mark.skipif(
    not default_model.is_available(), reason="the embedded default checkpoint is not installed"
)


@pytest.fixture
def serve_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Any:
    """Run ``mmsr serve ARGS`` without a server or a world build; return the settings it built."""
    for key in [k for k in os.environ if k.startswith("MMSR_")]:
        monkeypatch.delenv(key)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setattr(default_model, "is_available", lambda: True)
    monkeypatch.setattr(default_model, "demo_world", lambda env=None, build=True: tmp_path / "world")
    seen: dict[str, Any] = {}
    monkeypatch.setattr(
        "mmsr_serve.api.app.create_app", lambda settings, **kw: seen.setdefault("s", settings)
    )
    monkeypatch.setattr("uvicorn.run", lambda app, **kw: None)
    app = typer.Typer()
    app.command()(api_cli.serve)

    def run(*args: str) -> Settings:
        seen.clear()
        result = CliRunner().invoke(app, list(args))
        assert result.exit_code == 0, result.output
        settings: Settings = seen["s"]
        return settings

    return run


class _Build:
    def __init__(self, order: list[str]) -> None:
        self.order = order

    def wait(self) -> None:
        self.order.append("world ready")

    def cancel(self) -> None:
        self.order.append("world cancelled")


def test_a_first_start_loads_the_model_while_the_world_is_generated(
    serve_settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    order: list[str] = []

    def start(settings: Settings) -> _Build:
        order.append("world started")
        return _Build(order)

    monkeypatch.setattr(api_cli, "_start_demo_world", start)
    monkeypatch.setattr(Settings, "build_backend", lambda self: order.append("model loaded"))
    serve_settings()
    assert order == ["world started", "model loaded", "world ready"]
    order.clear()

    def fails(self: Settings) -> None:
        raise ConfigError("no such checkpoint")

    monkeypatch.setattr(Settings, "build_backend", fails)
    app = typer.Typer()
    app.command()(api_cli.serve)
    result = CliRunner().invoke(app, [])
    assert result.exit_code == 2 and "no such checkpoint" in result.output
    assert order == ["world started", "world cancelled"]  # no generator left running


def test_an_unfinished_world_build_leaves_nothing_behind(tmp_path: Path) -> None:
    env = {"XDG_CACHE_HOME": str(tmp_path)}
    build = default_model.start_demo_world(env)
    assert build is not None
    build.cancel()
    assert list((tmp_path / "mmsr").iterdir()) == []  # neither the world nor its staging folder


def test_no_arguments_serve_the_packaged_checkpoint_over_the_demo_world(
    serve_settings: Any, tmp_path: Path
) -> None:
    settings = serve_settings()
    assert settings.backend == "hf"
    assert Path(settings.model) == default_model.CHECKPOINT
    assert settings.model_id == default_model.SERVED_NAME
    assert settings.index == tmp_path / "world" / "corpus"
    # Other flags combine with the default ...
    assert serve_settings("--port", "9000", "--max-turns", "2").model == str(default_model.CHECKPOINT)
    assert serve_settings("--index", str(tmp_path / "c")).index == tmp_path / "c"
    web = serve_settings("--text-search", "duckduckgo", "--image-search", "local", "--index", "x")
    assert web.index == Path("x")
    # ... and an explicit model or model server is served as before.
    explicit = serve_settings("--model", "mmsr-7b")
    assert (explicit.backend, explicit.model, explicit.index) == ("openai", "mmsr-7b", None)
    hf = serve_settings("--backend", "hf", "--model", str(tmp_path))
    assert hf.model == str(tmp_path) and hf.index is None


def test_a_named_model_server_without_a_model_is_still_an_error() -> None:
    settings = Settings.load(env={}, backend_urls=["http://gpu:8000/v1"])
    assert not settings.wants_default_model
    with pytest.raises(ConfigError, match="no model"):
        create_app(settings.with_default_model(env={}))
    assert not Settings.load(env={}, backend="openai").wants_default_model
    # settings that only make sense for a model server name one too
    assert not Settings.load(env={"MMSR_BACKEND_API_KEY": "k"}).wants_default_model
    assert not Settings.load(env={}, backend_timeout_s=30).wants_default_model


def test_an_explicit_index_path_is_not_paired_with_the_demo_corpus(tmp_path: Path) -> None:
    settings = Settings.load(env={}, index_path=tmp_path / "my.sqlite").with_default_model(
        env={}, build=False
    )
    assert settings.backend == "hf" and settings.index is None


def test_the_cache_folder_follows_xdg(tmp_path: Path) -> None:
    env = {"XDG_CACHE_HOME": str(tmp_path)}
    assert default_model.demo_world(env, build=False) == tmp_path / "mmsr" / "demo-world"
    assert default_model.cache_root({}) == Path.home() / ".cache" / "mmsr"


@needs_checkpoint
@pytest.mark.slow
async def test_the_default_model_answers_over_the_demo_world(tmp_path: Path) -> None:
    env = {"XDG_CACHE_HOME": str(tmp_path)}
    settings = Settings.load(env={}, device="cpu").with_default_model(env)
    world = default_model.demo_world(env, build=False)
    assert (world / "world.json").is_file() and settings.index == world / "corpus"
    from mmsr_bench.world import read_questions

    question = read_questions(world / "questions" / "test-unknown.jsonl")[0]
    assert question.image is not None
    with Image.open(question.image) as img:
        url = data_url(img.convert("RGB"))
    app = create_app(settings)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://mmsr.test", timeout=120) as client:
        models = (await client.get("/v1/models")).json()
        assert [m["id"] for m in models["data"]] == [default_model.SERVED_NAME]
        body = {"messages": [user_with_image(question.question, url)], "return_trace": True}
        response = await client.post("/v1/chat/completions", json=body)
    assert response.status_code == 200, response.text
    data = response.json()
    choice = data["choices"][0]
    assert choice["finish_reason"] in ("stop", "length", "max_turns")
    assert isinstance(choice["message"]["content"], str)
    assert data["model"] == default_model.SERVED_NAME
    assert data["usage"]["prompt_tokens"] > 0
