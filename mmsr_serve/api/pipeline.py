"""One request's run, whichever API asked for it: admission, deadline, cost ledger, the runs, and
their answer as JSON or as server-sent events.

``/v1/chat/completions`` and ``/v1/responses`` differ only in how a result reads: each passes a
:class:`Renderer`; everything else (the slot, the request's deadline, the image loading, the
agent runs, disconnects, SIGTERM drain, metrics and the access line) is here, once.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import aclosing
from dataclasses import dataclass
from typing import Any, Protocol

import anyio
from fastapi import Request
from fastapi.responses import Response
from sse_starlette import EventSourceResponse
from starlette.background import BackgroundTask

from mmsr_serve._timeouts import timeout_at
from mmsr_serve.agent.agent import SearchAgent
from mmsr_serve.agent.events import AgentResult, Event
from mmsr_serve.agent.limits import Limits
from mmsr_serve.api import convert
from mmsr_serve.api.access import Access, access_of
from mmsr_serve.api.errors import error_body
from mmsr_serve.api.metrics import Metrics
from mmsr_serve.api.runs import (
    DisconnectWatch,
    Events,
    Slots,
    collect,
    merged,
    prefetch,
    replay,
)
from mmsr_serve.api.schemas import ChatCompletionRequest
from mmsr_serve.api.settings import Settings
from mmsr_serve.errors import NotFound, RequestTimeout, TooManyRequests
from mmsr_serve.images import Fetch
from mmsr_serve.search.costs import CostLedger, current_ledger
from mmsr_serve.search.location import current_location


@dataclass
class Runtime:
    """What the endpoints share, kept on ``app.state.runtime``."""

    settings: Settings
    agent: SearchAgent
    metrics: Metrics
    slots: Slots
    fetch: Fetch | None
    started: int
    index: object = None
    """The search provider before any cache wrapper (its ``ensure_index`` says whether it is ready)."""


def runtime_of(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


@dataclass(frozen=True)
class RunInfo:
    """What a renderer needs to know of the request besides its results."""

    body: ChatCompletionRequest
    model: str
    created: int
    limits: Limits
    stops: list[str]
    ledger: CostLedger
    on_error: Callable[[BaseException], None]
    """Counts an error event of a stream and names it in the access line."""


class Renderer(Protocol):
    def json(self, run: RunInfo, results: list[AgentResult]) -> Response: ...

    def sse(self, run: RunInfo, events: Events) -> AsyncIterator[dict[str, str]]: ...


def _on_stream_error(rt: Runtime, access: Access | None) -> Callable[[BaseException], None]:
    def on_error(exc: BaseException) -> None:
        rt.metrics.count_error(exc)
        if access is not None:
            inner = error_body(exc)["error"]
            access.error(inner["type"], inner["message"])

    return on_error


async def run_request(request: Request, body: ChatCompletionRequest, renderer: Renderer) -> Response:
    """Admit the request, run its ``n`` runs and answer through ``renderer``."""
    rt = runtime_of(request)
    if body.model is not None and body.model != rt.settings.model_id:
        raise NotFound(f"the model '{body.model}' does not exist", param="model")
    convert.check_supported(body, rt.settings)
    limits = convert.limits_for(body, rt.settings)
    if not rt.slots.try_acquire():
        raise TooManyRequests("too many requests in flight, retry shortly", headers={"Retry-After": "1"})
    rt.metrics.in_flight.inc()
    handed_over = False
    ledger = CostLedger()  # the request's provider calls: the runs' tasks inherit it
    ledger_token = current_ledger.set(ledger)
    location_token = current_location.set(convert.user_location(body))  # for providers that localise
    timeout_s = rt.settings.request_timeout_s
    deadline = asyncio.get_running_loop().time() + timeout_s
    try:
        async with DisconnectWatch(request.receive):
            # The deadline covers the whole request: the image URL fetches too, then the runs.
            reading = convert.read_conversation(body, rt.settings, rt.fetch, rt.agent.pack.image_geometry)
            try:
                async with timeout_at(deadline):
                    conversation = await reading
            except asyncio.TimeoutError:
                raise RequestTimeout(f"the request did not finish within {timeout_s:g} s") from None
            n = body.n or 1
            stops = convert.stop_sequences(body)
            streams = [
                rt.agent.stream(
                    conversation.question,
                    conversation.image,
                    conversation.history,
                    limits=limits,
                    sampling=convert.sampling_for(body, i, stops),
                    mode=body.search_mode,
                )
                for i in range(n)
            ]
            left = max(0.0, deadline - asyncio.get_running_loop().time())
            shutdown = anyio.Event() if body.stream else None  # set by the SSE response at SIGTERM
            drain_s = rt.settings.shutdown_timeout_s
            access = access_of(request.scope)
            observe = rt.metrics.observe
            if access is not None:

                def observe(event: Event) -> None:
                    rt.metrics.observe(event)
                    access.observe(event)

            events = merged(
                streams,
                timeout_s=left,
                on_event=observe,
                deadline_s=timeout_s,
                shutdown=shutdown,
                drain_s=drain_s,
            )
            run = RunInfo(
                body=body,
                model=rt.settings.model_id,
                created=int(time.time()),
                limits=limits,
                stops=stops,
                ledger=ledger,
                on_error=_on_stream_error(rt, access),
            )
            if not body.stream:
                results: list[AgentResult] = await collect(events, n)
                return renderer.json(run, results)
            buffered = await prefetch(events)

        released = False

        def release() -> None:  # idempotent: from the stream's end, or after the response if never started
            nonlocal released
            if not released:
                released = True
                rt.slots.release()
                rt.metrics.in_flight.dec()

        handed_over = True

        async def release_after() -> None:  # async: Starlette runs a plain function on a worker thread
            release()

        content = _released(renderer.sse(run, replay(buffered, events)), release)
        return EventSourceResponse(
            content,
            ping=15,
            background=BackgroundTask(release_after),
            # a client that stops reading frees its slot: each send has this long to go out
            send_timeout=rt.settings.stream_send_timeout_s,
            shutdown_event=shutdown,
            shutdown_grace_period=drain_s + 1,  # after our own farewell (the error event)
        )
    finally:
        current_location.reset(location_token)
        current_ledger.reset(ledger_token)
        if not handed_over:
            rt.slots.release()
            rt.metrics.in_flight.dec()


async def _released(source: Any, release: Any) -> Any:
    """Pass the stream through; free the request's slot however it ends (done, error, disconnect)."""
    try:
        async with aclosing(source):
            async for item in source:
                yield item
    finally:
        release()
