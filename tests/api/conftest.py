"""Fixtures for the server tests: the app over httpx's ASGI transport, a live uvicorn on loopback,
and a stand-in OpenAI-compatible model server (see :mod:`tests.api.model_server`)."""

from __future__ import annotations

import asyncio
import base64
import io
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image

from mmsr_serve.api import Settings, create_app
from mmsr_serve.backends.base import Completion, Delta, GenerateRequest, ModelBackend
from tests.api.live import LiveServer, serve_in_thread
from tests.api.model_server import MODEL, ModelServer
from tests.corpus_fixture import read_docs, variant

R = "<reason>thinking it over</reason>"
IMAGE_SEARCH = f"{R}<search><img></search>"


def data_url(image: Image.Image, fmt: str = "JPEG") -> str:
    buf = io.BytesIO()
    image.convert("RGB").save(buf, format=fmt)
    return f"data:image/{fmt.lower()};base64,{base64.b64encode(buf.getvalue()).decode()}"


def user_with_image(question: str, url: str) -> dict[str, Any]:
    return {
        "role": "user",
        "content": [{"type": "text", "text": question}, {"type": "image_url", "image_url": {"url": url}}],
    }


@pytest.fixture
def doc(corpus_dir: Path) -> dict[str, Any]:
    """The first corpus document (it has an image)."""
    return read_docs(corpus_dir)[0]


@pytest.fixture
def doc_image_url(corpus_dir: Path, doc: dict[str, Any]) -> str:
    """A data URL of a re-encoded, cropped copy of the first document's image."""
    with Image.open(corpus_dir / doc["image"]) as img:
        return data_url(variant(img.convert("RGB")))


AppClient = Callable[..., httpx.AsyncClient]


@pytest.fixture
async def app_client() -> AsyncIterator[AppClient]:
    """``app_client(backend=..., search=..., **settings)`` -> an httpx client on a fresh app."""
    clients: list[httpx.AsyncClient] = []

    def make(backend: ModelBackend, search: Any = None, **settings: Any) -> httpx.AsyncClient:
        app = create_app(Settings(**{"model": "mmsr-test", **settings}), backend=backend, search=search)
        client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://mmsr.test")
        client.app = app  # type: ignore[attr-defined]
        clients.append(client)
        return client

    yield make
    for client in clients:
        await client.aclose()


@pytest.fixture
def model_server() -> Iterator[ModelServer]:
    """A stand-in OpenAI-compatible model server on loopback (scripted replies, vLLM stop handling)."""
    server = ModelServer()
    with serve_in_thread(server.app) as live:
        server.url = live.url + "/v1"
        yield server


@pytest.fixture
def live_app() -> Iterator[Callable[..., LiveServer]]:
    """``live_app(app)`` -> the app served by uvicorn on 127.0.0.1 (random port), stopped at teardown."""
    stack: list[Any] = []

    def start(app: Any) -> LiveServer:
        manager = serve_in_thread(app)
        stack.append(manager)
        return manager.__enter__()

    yield start
    for manager in reversed(stack):
        manager.__exit__(None, None, None)


KEY = "sk-test-key"


@pytest.fixture
def gateway(model_server: ModelServer, corpus_dir: Path, live_app: Callable[..., LiveServer]) -> LiveServer:
    """A live ``mmsr serve`` app (API key ``KEY``) over the stand-in model server and the fixture corpus."""
    settings = Settings(
        model=MODEL, backend_urls=[model_server.url], index=corpus_dir, api_keys=[KEY], backend_timeout_s=10
    )
    return live_app(create_app(settings))


@pytest.fixture
def scripted(model_server: ModelServer, doc: dict[str, Any]) -> Iterator[str]:
    """The three protocol turns of image search -> text search -> answer; yields the answer."""
    answer = doc["text"].split("designed by ")[1].split(" and ")[0]
    model_server.enqueue(
        "<reason>I cannot tell what this is.</reason><search><img></search>",
        f"<reason>It is {doc['title']}.</reason><text_search>{doc['title']} designer</text_search>",
        f"<reason>The page names the designer.</reason><answer>{answer}</answer>",
    )
    yield answer


def messages(image_url: str) -> list[dict[str, Any]]:
    return [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "Who designed this?"},
                {"type": "image_url", "image_url": {"url": image_url}},
            ],
        }
    ]


class BlockingBackend(ModelBackend):
    """A backend whose turn hangs (after an optional first delta) until cancelled; it records
    that it started and that it was cancelled (thread-safe flags: the app may run in uvicorn's thread)."""

    model = "blocking"

    def __init__(self, first_delta: str | None = "<reason>") -> None:
        self.first_delta = first_delta
        self.started = threading.Event()
        self.cancelled = threading.Event()

    async def stream(self, request: GenerateRequest) -> AsyncIterator[Delta | Completion]:
        self.started.set()
        if self.first_delta:
            yield Delta(self.first_delta)
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            self.cancelled.set()
            raise
        yield Completion("", "stop")


async def wait_for(flag: threading.Event, timeout_s: float = 5.0) -> bool:
    """Poll a thread-safe flag from async code without blocking the loop."""
    for _ in range(int(timeout_s / 0.01)):
        if flag.is_set():
            return True
        await asyncio.sleep(0.01)
    return flag.is_set()
