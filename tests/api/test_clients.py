"""The examples in clients/ run unchanged against a live server."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from mmsr_serve.api import Settings, create_app
from mmsr_serve.backends import ScriptedBackend
from mmsr_serve.search.local import LocalIndex
from tests.api.conftest import IMAGE_SEARCH, R
from tests.api.live import LiveServer

CLIENTS = Path(__file__).resolve().parents[2] / "clients"


def run(cmd: list[str], server: LiveServer, **extra_env: str) -> str:
    """Run an example; it finds the model from ``/v1/models`` unless ``MMSR_MODEL`` is given."""
    env = {k: v for k, v in os.environ.items() if k != "MMSR_MODEL"}
    env.update({"MMSR_URL": server.url + "/v1", "MMSR_API_KEY": "k", **extra_env})
    out = subprocess.run(cmd, cwd=CLIENTS, env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr + out.stdout
    return out.stdout


@pytest.fixture
def serve(live_app: Callable[..., LiveServer], local_index: LocalIndex) -> Callable[[list[str]], LiveServer]:
    def start(turns: list[str]) -> LiveServer:
        settings = Settings(model="mmsr-test", api_keys=["k"])
        return live_app(create_app(settings, backend=ScriptedBackend(turns), search=local_index))

    return start


def searching(doc: dict[str, Any]) -> list[str]:
    return [IMAGE_SEARCH, f"{R}<text_search>{doc['title']}</text_search>", f"{R}<answer>Ines</answer>"]


@pytest.mark.slow
def test_sync_example(
    serve: Callable[[list[str]], LiveServer], doc: dict[str, Any], corpus_dir: Path
) -> None:
    out = run(
        [sys.executable, "openai_sync.py", "Who?", str(corpus_dir / doc["image"])], serve(searching(doc))
    )
    assert "answer: Ines" in out and "search calls: {'image': 1, 'text': 1}" in out
    assert doc["url"] in out and "image_search -> text_search -> answer" in out


@pytest.mark.slow
def test_async_example(serve: Callable[[list[str]], LiveServer]) -> None:
    out = run([sys.executable, "openai_async.py", "Who?"], serve([f"{R}<answer>A</answer>"] * 2))
    assert "auto: 'A' searches={'image': 0, 'text': 0}" in out  # both modes run concurrently
    assert "off: '<reason>" in out


@pytest.mark.slow
def test_examples_take_the_model_from_the_environment(serve: Callable[[list[str]], LiveServer]) -> None:
    server = serve([f"{R}<answer>A</answer>"] * 2)
    cmd = [sys.executable, "openai_sync.py", "Who?"]
    assert "answer: A" in run(cmd, server, MMSR_MODEL="mmsr-test")
    failed = subprocess.run(
        cmd,
        cwd=CLIENTS,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "MMSR_URL": server.url + "/v1", "MMSR_API_KEY": "k", "MMSR_MODEL": "other"},
    )
    assert failed.returncode != 0 and "the model 'other' does not exist" in failed.stderr


@pytest.mark.slow
def test_streaming_example(
    serve: Callable[[list[str]], LiveServer], doc: dict[str, Any], corpus_dir: Path
) -> None:
    out = run(
        [sys.executable, "openai_streaming.py", "Who?", str(corpus_dir / doc["image"])], serve(searching(doc))
    )
    assert "[image search" in out and f"[text search {doc['title']}]" in out
    assert "answer: Ines (stop)" in out and "usage:" in out


@pytest.mark.slow
def test_responses_example(
    serve: Callable[[list[str]], LiveServer], doc: dict[str, Any], corpus_dir: Path
) -> None:
    out = run(
        [sys.executable, "openai_responses.py", "Who?", str(corpus_dir / doc["image"])], serve(searching(doc))
    )
    assert "[searching: the image]" in out and f"[searching: {doc['title']}]" in out
    assert "answer: Ines (completed)" in out and f"source: {doc['url']}" in out
    items = "reasoning -> web_search_call -> reasoning -> web_search_call -> reasoning -> message"
    assert f"items: {items}" in out and "searches: {'image': 1, 'text': 1}" in out


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_curl_example(
    serve: Callable[[list[str]], LiveServer], doc: dict[str, Any], corpus_dir: Path
) -> None:
    turns = [f"{R}<answer>Gustave</answer>", *searching(doc), f"{R}<answer>Gustave</answer>"]
    out = run(["bash", "curl.sh", str(corpus_dir / doc["image"])], serve(turns))
    assert (
        out.count('"content":"Gustave"') == 2
        and '"content":"Ines"' in out
        and '"trace"' in out
        and "data: [DONE]" in out
    )
