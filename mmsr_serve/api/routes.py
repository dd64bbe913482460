"""The endpoints: chat completions, models, health, readiness, metrics."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable
from contextlib import aclosing
from dataclasses import dataclass
from typing import Any

import anyio
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from sse_starlette import EventSourceResponse
from starlette.background import BackgroundTask

from mmsr_serve.agent.agent import SearchAgent
from mmsr_serve.agent.events import AgentResult, Event
from mmsr_serve.api import convert, render
from mmsr_serve.api.access import Access, access_of
from mmsr_serve.api.errors import error_body
from mmsr_serve.api.metrics import CONTENT_TYPE, Metrics
from mmsr_serve.api.runs import Slots, cancel_on_disconnect, collect, merged, prefetch, replay
from mmsr_serve.api.schemas import (
    ChatCompletion,
    ChatCompletionRequest,
    Choice,
    ModelCard,
    ModelList,
    ResponseMessage,
)
from mmsr_serve.api.settings import Settings
from mmsr_serve.api.streaming import StreamContext, sse_events
from mmsr_serve.errors import BackendError, MMSRError, NotFound, RequestTimeout, TooManyRequests, Unavailable
from mmsr_serve.images import Fetch
from mmsr_serve.search.costs import CostLedger, current_ledger

log = logging.getLogger("mmsr.api")
router = APIRouter()
READY_TIMEOUT_S = 5.0


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


def _on_stream_error(rt: Runtime, access: Access | None) -> Callable[[BaseException], None]:
    """Counts an error event of a stream, and names it in the request's access line."""

    def on_error(exc: BaseException) -> None:
        rt.metrics.count_error(exc)
        if access is not None:
            inner = error_body(exc)["error"]
            access.error(inner["type"], inner["message"])

    return on_error


def _runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


@router.get("/health")
@router.head("/health", include_in_schema=False)  # load balancers probe with HEAD too
async def health() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/ready")
@router.head("/ready", include_in_schema=False)
async def ready(request: Request) -> dict[str, Any]:
    rt = _runtime(request)
    # /ready needs no key (probes have none): its answers name no address or path; the log does.
    try:
        await asyncio.wait_for(rt.agent.backend.check_ready(), READY_TIMEOUT_S)
    except (BackendError, asyncio.TimeoutError) as exc:
        log.warning("not ready: the model backend: %s", exc or "no answer in time")
        reason = exc.public if isinstance(exc, BackendError) else "no answer in time"
        raise Unavailable(f"the model backend is not ready: {reason}") from exc
    ensure = getattr(rt.index, "ensure_index", None)
    if ensure is not None:
        try:
            await asyncio.to_thread(ensure)
        except MMSRError as exc:
            log.warning("not ready: the search index: %s", exc)
            raise Unavailable("the search index is not ready (the server's log says why)") from exc
    return {"status": "ready", "model": rt.settings.model_id}


@router.get("/metrics")
async def metrics(request: Request) -> Response:
    return Response(_runtime(request).metrics.exposition(), media_type=CONTENT_TYPE)


@router.get("/v1/models")
async def list_models(request: Request) -> ModelList:
    rt = _runtime(request)
    return ModelList(data=[ModelCard(id=rt.settings.model_id, created=rt.started)])


@router.get("/v1/models/{model_id:path}")
async def get_model(model_id: str, request: Request) -> ModelCard:
    rt = _runtime(request)
    if model_id != rt.settings.model_id:
        raise NotFound(f"the model '{model_id}' does not exist", param="model")
    return ModelCard(id=model_id, created=rt.started)


@router.post("/v1/chat/completions", response_model=None)
async def chat_completions(body: ChatCompletionRequest, request: Request) -> Response:
    rt = _runtime(request)
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
    timeout_s = rt.settings.request_timeout_s
    deadline = asyncio.get_running_loop().time() + timeout_s
    try:
        # The deadline covers the whole request: the image URL fetches too, then the runs.
        try:
            conversation = await cancel_on_disconnect(
                request, asyncio.wait_for(convert.read_conversation(body, rt.settings, rt.fetch), timeout_s)
            )
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
        completion_id, created = f"chatcmpl-{uuid.uuid4().hex}", int(time.time())
        model = rt.settings.model_id
        if not body.stream:
            results: list[AgentResult] = await cancel_on_disconnect(request, collect(events, n))
            response = _completion(completion_id, created, model, results, body, limits, stops, ledger)
            return JSONResponse(response.model_dump(mode="json"))
        buffered = await cancel_on_disconnect(request, prefetch(events))

        released = False

        def release() -> None:  # idempotent: from the stream's end, or after the response if never started
            nonlocal released
            if not released:
                released = True
                rt.slots.release()
                rt.metrics.in_flight.dec()

        ctx = StreamContext(
            id=completion_id,
            created=created,
            model=model,
            n=n,
            mode=body.search_mode,
            stops=stops,
            limits=limits,
            include_usage=bool(body.stream_options and body.stream_options.include_usage),
            return_trace=body.return_trace,
            on_error=_on_stream_error(rt, access),
            trace_extras=lambda: {"cost": ledger.summary()},
        )
        handed_over = True
        content = _released(sse_events(replay(buffered, events), ctx), release)
        return EventSourceResponse(
            content,
            ping=15,
            background=BackgroundTask(release),
            # a client that stops reading frees its slot: each send has this long to go out
            send_timeout=rt.settings.stream_send_timeout_s,
            shutdown_event=shutdown,
            shutdown_grace_period=drain_s + 1,  # after our own farewell (error event + [DONE])
        )
    finally:
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


def _completion(
    completion_id: str,
    created: int,
    model: str,
    results: list[AgentResult],
    body: ChatCompletionRequest,
    limits: Any,
    stops: list[str],
    ledger: CostLedger,
) -> ChatCompletion:
    choices = []
    for index, result in enumerate(results):
        content = render.content_of(result, stops)
        reasoning = render.reasoning_of(result)
        message = ResponseMessage(
            content=content,
            annotations=render.annotations_of(result, content),
            reasoning_content=reasoning,
            reasoning=reasoning,
        )
        choices.append(
            Choice(finish_reason=render.finish_reason_of(result, stops), index=index, message=message)
        )
    return ChatCompletion(
        id=completion_id,
        choices=choices,
        created=created,
        model=model,
        usage=render.usage_of(results),
        search_results=render.search_results_of([s for r in results for s in r.searches]),
        trace=(
            {**render.trace_of(results, body.search_mode, limits), "cost": ledger.summary()}
            if body.return_trace
            else None
        ),
    )
