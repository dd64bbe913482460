"""The endpoints: chat completions, responses, models, health, readiness, metrics."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from mmsr_serve.agent.events import AgentResult
from mmsr_serve.api import render
from mmsr_serve.api.metrics import CONTENT_TYPE
from mmsr_serve.api.pipeline import RunInfo, Runtime, run_request, runtime_of
from mmsr_serve.api.responses_render import ResponsesRenderer
from mmsr_serve.api.responses_request import ResponsesRequest, to_chat
from mmsr_serve.api.runs import Events
from mmsr_serve.api.schemas import (
    ChatCompletion,
    ChatCompletionRequest,
    Choice,
    ModelCard,
    ModelList,
    ResponseMessage,
)
from mmsr_serve.api.streaming import StreamContext, sse_events
from mmsr_serve.errors import BackendError, MMSRError, NotFound, Unavailable

__all__ = ["READY_TIMEOUT_S", "Runtime", "router"]

log = logging.getLogger("mmsr.api")
router = APIRouter()
READY_TIMEOUT_S = 5.0


@router.get("/health")
@router.head("/health", include_in_schema=False)  # load balancers probe with HEAD too
async def health() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/ready")
@router.head("/ready", include_in_schema=False)
async def ready(request: Request) -> dict[str, Any]:
    rt = runtime_of(request)
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
    return Response(runtime_of(request).metrics.exposition(), media_type=CONTENT_TYPE)


@router.get("/v1/models")
async def list_models(request: Request) -> ModelList:
    rt = runtime_of(request)
    return ModelList(data=[ModelCard(id=rt.settings.model_id, created=rt.started)])


@router.get("/v1/models/{model_id:path}")
async def get_model(model_id: str, request: Request) -> ModelCard:
    rt = runtime_of(request)
    if model_id != rt.settings.model_id:
        raise NotFound(f"the model '{model_id}' does not exist", param="model")
    return ModelCard(id=model_id, created=rt.started)


@router.post("/v1/chat/completions", response_model=None)
async def chat_completions(body: ChatCompletionRequest, request: Request) -> Response:
    return await run_request(request, body, ChatRenderer())


@router.post("/v1/responses", response_model=None)
async def create_response(body: ResponsesRequest, request: Request) -> Response:
    return await run_request(request, to_chat(body), ResponsesRenderer(body))


@router.get("/v1/responses/{response_id}")
@router.delete("/v1/responses/{response_id}")
@router.get("/v1/responses/{response_id}/input_items")
@router.post("/v1/responses/{response_id}/cancel")
async def stored_response(response_id: str) -> None:
    raise NotFound(
        f"the response '{response_id}' is not stored: this server keeps no responses", param="response_id"
    )


class ChatRenderer:
    """Results as a ``chat.completion``, events as ``chat.completion.chunk`` server-sent events."""

    def __init__(self) -> None:
        self.id = f"chatcmpl-{uuid.uuid4().hex}"

    def json(self, run: RunInfo, results: list[AgentResult]) -> Response:
        response = _completion(self.id, run, results)
        return Response(response.model_dump_json(), media_type="application/json")

    def sse(self, run: RunInfo, events: Events) -> AsyncIterator[dict[str, str]]:
        body = run.body
        ctx = StreamContext(
            id=self.id,
            created=run.created,
            model=run.model,
            n=body.n or 1,
            mode=body.search_mode,
            stops=run.stops,
            limits=run.limits,
            include_usage=bool(body.stream_options and body.stream_options.include_usage),
            return_trace=body.return_trace,
            on_error=run.on_error,
            trace_extras=lambda: {"cost": run.ledger.summary()},
        )
        return sse_events(events, ctx)


def _completion(completion_id: str, run: RunInfo, results: list[AgentResult]) -> ChatCompletion:
    stops, body = run.stops, run.body
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
        created=run.created,
        model=run.model,
        usage=render.usage_of(results),
        search_results=render.search_results_of([s for r in results for s in r.searches]),
        trace=(
            {**render.trace_of(results, body.search_mode, run.limits), "cost": run.ledger.summary()}
            if body.return_trace
            else None
        ),
    )
