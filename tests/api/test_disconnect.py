"""A client that goes away cancels its run: the backend request stops, the slot is freed."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Awaitable, Callable

import httpx

from mmsr_serve.api import Settings, create_app
from tests.api.conftest import BlockingBackend, wait_for
from tests.api.live import LiveServer
from tests.api.model_server import BLOCK, MODEL, ModelServer

BODY = {"model": MODEL, "messages": [{"role": "user", "content": "Q?"}]}


async def read_first_chunk_then_leave(url: str, body: dict[str, object]) -> None:
    async with (
        httpx.AsyncClient(timeout=10) as client,
        client.stream("POST", url + "/v1/chat/completions", json={**body, "stream": True}) as response,
    ):
        assert response.status_code == 200
        async for line in response.aiter_lines():
            if line.startswith("data: "):
                break  # hang up mid-stream


def in_flight(app: object) -> int:
    return int(app.state.runtime.slots.used)  # type: ignore[attr-defined]


async def test_streaming_disconnect_cancels_the_backend_turn(live_app: Callable[..., LiveServer]) -> None:
    backend = BlockingBackend()
    app = create_app(Settings(model=MODEL), backend=backend)
    server = live_app(app)
    await read_first_chunk_then_leave(server.url, BODY)
    assert await wait_for(backend.cancelled)
    assert await wait_for(_flag(lambda: in_flight(app) == 0))


async def test_streaming_disconnect_stops_the_request_to_vllm(
    live_app: Callable[..., LiveServer], model_server: ModelServer
) -> None:
    model_server.enqueue(BLOCK)
    settings = Settings(model=MODEL, backend_urls=[model_server.url], backend_timeout_s=30)
    server = live_app(create_app(settings))
    await read_first_chunk_then_leave(server.url, BODY)
    assert await wait_for(model_server.cancelled)


async def leave_once_the_turn_started(backend: BlockingBackend, request: Awaitable[object]) -> None:
    """Send ``request``; hang up (close the connection) once the backend's turn has started."""
    task = asyncio.ensure_future(request)
    assert await wait_for(backend.started)
    assert not task.done()  # no answer yet: the client leaves while the server is still working
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def test_non_streaming_disconnect_cancels_too(live_app: Callable[..., LiveServer]) -> None:
    backend = BlockingBackend(first_delta=None)
    app = create_app(Settings(model=MODEL), backend=backend)
    server = live_app(app)
    async with httpx.AsyncClient(timeout=10) as client:
        request = client.post(server.url + "/v1/chat/completions", json=BODY)
        await leave_once_the_turn_started(backend, request)
    assert await wait_for(backend.cancelled)
    assert await wait_for(_flag(lambda: in_flight(app) == 0))


async def test_disconnect_while_waiting_for_the_first_token(live_app: Callable[..., LiveServer]) -> None:
    backend = BlockingBackend(first_delta=None)  # the stream has not started: headers not sent yet
    server = live_app(create_app(Settings(model=MODEL), backend=backend))

    async def open_the_stream() -> None:
        async with client.stream("POST", server.url + "/v1/chat/completions", json={**BODY, "stream": True}):
            pass

    async with httpx.AsyncClient(timeout=10) as client:
        await leave_once_the_turn_started(backend, open_the_stream())
    assert await wait_for(backend.cancelled)


def _flag(predicate: Callable[[], bool]) -> threading.Event:
    """A flag set by a watcher thread once ``predicate`` holds (for :func:`wait_for`)."""
    flag = threading.Event()

    def watch() -> None:
        for _ in range(500):
            if predicate():
                flag.set()
                return
            threading.Event().wait(0.01)

    threading.Thread(target=watch, daemon=True).start()
    return flag
