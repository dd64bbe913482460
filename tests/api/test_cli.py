"""Settings precedence, the ``serve`` flags, and ``mmsr chat`` against a live server."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from mmsr_serve.api import Settings, create_app
from mmsr_serve.api import cli as api_cli
from mmsr_serve.backends import ScriptedBackend
from mmsr_serve.errors import ConfigError
from mmsr_serve.search.local import LocalIndex
from tests.api.conftest import IMAGE_SEARCH, R
from tests.api.live import LiveServer


def test_settings_precedence_file_env_flags(tmp_path: Path) -> None:
    config = tmp_path / "mmsr.yaml"
    config.write_text("model: from-file\nport: 9000\nmax-turns: 2\nbackend_urls: [http://a:8000/v1]\n")
    env = {"MMSR_PORT": "9100", "MMSR_BACKEND_URL": "http://b:8000/v1, http://c:8000/v1", "MMSR_API_KEY": "k"}
    settings = Settings.load(config, env=env, port=9200, max_turns=None)
    assert settings.model == "from-file" and settings.max_turns == 2
    assert settings.port == 9200
    assert settings.backend_urls == ["http://b:8000/v1", "http://c:8000/v1"]
    assert settings.api_keys == ["k"]
    assert settings.host == "127.0.0.1"
    json_config = tmp_path / "mmsr.json"
    json_config.write_text(json.dumps({"model": "m", "backend": "hf"}))
    assert Settings.load(env={"MMSR_CONFIG": str(json_config)}).model_id == "m"


def test_the_index_cut_off_reaches_the_local_index(tmp_path: Path) -> None:
    from mmsr_serve.search.factory import build_search

    settings = Settings.load(env={"MMSR_INDEX_MIN_SCORE": "0.5"}, model="m", index=tmp_path)
    config = settings.search_config()
    assert config.index_min_score == 0.5
    tools = build_search(config)
    assert getattr(tools.text, "min_relative_score", None) == 0.5


@pytest.mark.parametrize(
    "bad", [{"max_turns": 0}, {"backend": "tgi"}, {"nonsense": 1}, {"index_min_score": 1.5}]
)
def test_bad_settings_are_config_errors(bad: dict[str, Any]) -> None:
    with pytest.raises(ConfigError):
        Settings.load(env={}, **bad)


@pytest.mark.parametrize("env", [{"MMSR_API_KEY": ""}, {"MMSR_API_KEY": "k1, ,k2"}])
def test_an_empty_api_key_is_refused_not_an_open_server(env: dict[str, str]) -> None:
    with pytest.raises(ConfigError, match="an API key is empty"):
        Settings.load(env=env, model="m")


def test_serve_maps_flags_to_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    seen: dict[str, Any] = {}
    monkeypatch.setattr("uvicorn.run", lambda app, **kw: seen.update(app=app, **kw))
    for key in [k for k in __import__("os").environ if k.startswith("MMSR_")]:
        monkeypatch.delenv(key)
    app = typer.Typer()
    app.command()(api_cli.serve)
    args = ["--model", "mmsr-7b", "--backend-url", "http://a:1/v1", "--backend-url", "http://b:1/v1"]
    args += ["--api-key", "k1", "--max-turns", "2", "--port", "9999", "--request-timeout", "30"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    settings: Settings = seen["app"].state.runtime.settings
    assert settings.backend_urls == ["http://a:1/v1", "http://b:1/v1"]
    assert settings.api_keys == ["k1"] and settings.max_turns == 2 and settings.request_timeout_s == 30
    assert (seen["host"], seen["port"]) == ("127.0.0.1", 9999)
    bad = CliRunner().invoke(app, ["--model", "m", "--max-turns", "0"])
    assert bad.exit_code != 0 and "max_turns" in bad.output


def test_chat_shows_reasoning_searches_and_answer(
    live_app: Callable[..., LiveServer], local_index: LocalIndex, doc: dict[str, Any], corpus_dir: Path
) -> None:
    backend = ScriptedBackend(
        [
            IMAGE_SEARCH,
            f"{R}<text_search>{doc['title']}</text_search>",
            "<reason>Found it.</reason><answer>The answer</answer>",
        ]
    )
    server = live_app(
        create_app(Settings(model="mmsr-test", api_keys=["k"]), backend=backend, search=local_index)
    )
    app = typer.Typer()
    app.command()(api_cli.chat)
    args = ["Who made this?", "--image", str(corpus_dir / doc["image"]), "--url", server.url + "/v1"]
    result = CliRunner().invoke(app, [*args, "--api-key", "k"])
    assert result.exit_code == 0, result.output
    out = result.output
    assert "reasoning: thinking it over" in out
    assert "[image search ...]" in out and f"[web search: {doc['title']}: " in out
    assert doc["url"] in out
    assert "answer: The answer" in out
    assert out.index("Found it.") < out.index("answer: The answer")
    denied = CliRunner().invoke(app, [*args, "--api-key", "wrong"])
    assert denied.exit_code == 1


def test_chat_without_a_question_is_a_session_with_history(
    live_app: Callable[..., LiveServer], local_index: LocalIndex, doc: dict[str, Any], corpus_dir: Path
) -> None:
    backend = ScriptedBackend(
        [
            "<reason>Easy.</reason><answer>Paris</answer>",
            IMAGE_SEARCH,
            "<reason>Found it.</reason><answer>A tortoise</answer>",
        ]
    )
    server = live_app(create_app(Settings(model="mmsr-test"), backend=backend, search=local_index))
    app = typer.Typer()
    app.command()(api_cli.chat)
    lines = [
        "Capital of France?",
        "/image /no/such/file.jpg",
        f"/image {corpus_dir / doc['image']}",
        "And what is this?",
        "/clear",
        "/bye",
        "never sent",
    ]
    result = CliRunner().invoke(app, ["--url", server.url + "/v1"], input="\n".join(lines) + "\n")
    assert result.exit_code == 0, result.output
    out = result.output
    assert "Chatting with mmsr-test" in out and "answer: Paris" in out and "answer: A tortoise" in out
    assert "no such file: /no/such/file.jpg" in out and "[image search ...]" in out
    assert "(a new conversation)" in out
    first, second = backend.requests[0].messages, backend.requests[1].messages
    assert "Capital of France?" in first[-1].text
    # the second question carries the first exchange, and the picture is its search image
    assert [m.role for m in second][:2] == ["user", "assistant"] and second[1].text == "Paris"
    assert "And what is this?" in second[-1].text and second[-1].images
    assert len(backend.requests) == 3  # nothing after /bye
