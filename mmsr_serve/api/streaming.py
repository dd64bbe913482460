"""Agent events as OpenAI ``chat.completion.chunk`` server-sent events.

Order, per choice: a role chunk; ``delta.reasoning_content`` (and ``delta.reasoning``) while the
model thinks, live; ``delta.search_events`` when a search starts and when it finishes (mmsr
extension: a one-entry list, its ``index`` counting the choice's events, so that delta accumulators
append events instead of merging them);
the answer as ``delta.content``; a finish chunk carrying ``finish_reason``, ``delta.annotations``
and (mmsr) ``search_results`` and, with ``return_trace``, ``trace``. Then, with
``stream_options.include_usage``, one chunk with empty ``choices`` and ``usage``; then ``[DONE]``.

The loop's events say what is reasoning and what is the answer (``TextDelta.reasoning`` /
``.answer``, ``ReasoningDelta``, ``AnswerDelta``); this module maps them to chunks without knowing
the protocol. In the search modes
the answer comes once the run has ended (answers are short, and only then is it known which turn's
answer is final); with ``search_mode: off`` the reply streams live.
Streamed reasoning and content always add up to the non-streaming response's fields.
An error after the first chunk is sent as ``data: {"error": {...}}``, then ``[DONE]``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import aclosing
from dataclasses import dataclass
from typing import Any

from mmsr_serve.agent.events import (
    AgentResult,
    AnswerDelta,
    Finished,
    ReasoningDelta,
    SearchFinished,
    SearchStarted,
    TextDelta,
)
from mmsr_serve.agent.limits import Limits
from mmsr_serve.api import render
from mmsr_serve.api.errors import error_body
from mmsr_serve.api.runs import Events
from mmsr_serve.api.schemas import ChatCompletionChunk, ChoiceDelta, ChunkChoice

logger = logging.getLogger("mmsr.api")


@dataclass
class ChoiceStream:
    """The deltas of one choice, from its events. The loop's events already say which text is
    reasoning and which is the answer: nothing here knows the protocol's tags."""

    index: int
    stops: Sequence[str]

    def __post_init__(self) -> None:
        self._search_events = 0

    def on_event(self, event: object) -> list[ChoiceDelta]:
        if isinstance(event, TextDelta):
            if event.reasoning:
                return [ChoiceDelta(reasoning_content=event.reasoning, reasoning=event.reasoning)]
            return [ChoiceDelta(content=event.answer)] if event.answer else []
        if isinstance(event, ReasoningDelta):
            return [ChoiceDelta(reasoning_content=event.text, reasoning=event.text)]
        if isinstance(event, AnswerDelta):
            return [ChoiceDelta(content=event.text)]
        if isinstance(event, SearchStarted):
            return self._search_delta(
                {"status": "started", "kind": event.kind, "query": event.query, "turn": event.turn}
            )
        if isinstance(event, SearchFinished):
            return self._search_delta({"status": "finished", **render.search_event(event.record)})
        return []

    def finish(self, result: AgentResult) -> ChunkChoice:
        """The finish chunk's choice (the loop's ``AnswerDelta`` pieces already made the answer)."""
        annotations = render.annotations_of(result, render.content_of(result, self.stops))
        return ChunkChoice(
            index=self.index,
            delta=ChoiceDelta(annotations=annotations or None),
            finish_reason=render.finish_reason_of(result, self.stops),
        )

    def _search_delta(self, search: dict[str, Any]) -> list[ChoiceDelta]:
        index, self._search_events = self._search_events, self._search_events + 1
        return [ChoiceDelta(search_events=[{"index": index, **search}])]


@dataclass
class StreamContext:
    id: str
    created: int
    model: str
    n: int
    mode: str
    stops: Sequence[str]
    limits: Limits
    include_usage: bool
    return_trace: bool
    on_done: Callable[[list[AgentResult]], None] = lambda results: None
    on_error: Callable[[BaseException], None] = lambda exc: None
    trace_extras: Callable[[], dict[str, Any]] = dict
    """Request-level fields added to each choice's trace (the provider calls' ``cost`` so far)."""


def _sse(payload: dict[str, Any]) -> dict[str, str]:
    return {"data": json.dumps(payload, ensure_ascii=False, separators=(",", ":"))}


async def sse_events(events: Events, ctx: StreamContext) -> AsyncIterator[dict[str, str]]:
    """The server-sent events of a streaming response."""
    streams = [ChoiceStream(i, ctx.stops) for i in range(ctx.n)]
    results: list[AgentResult] = []
    try:
        for i in range(ctx.n):
            yield _chunk(ctx, [ChunkChoice(index=i, delta=ChoiceDelta(role="assistant", content=""))])
        async with aclosing(events):
            async for index, event in events:
                if isinstance(event, Finished):
                    results.append(event.result)
                    yield _finish_chunk(ctx, streams[index], event.result)
                else:
                    for delta in streams[index].on_event(event):
                        yield _chunk(ctx, [ChunkChoice(index=index, delta=delta)])
        if ctx.include_usage:
            yield _chunk(ctx, [], usage=render.usage_of(results))
        ctx.on_done(results)
    except Exception as exc:
        logger.warning("error during a streamed response: %s: %s", type(exc).__name__, exc)
        ctx.on_error(exc)
        yield _sse(error_body(exc))
    yield {"data": "[DONE]"}


def _chunk(ctx: StreamContext, choices: list[ChunkChoice], **extra: Any) -> dict[str, str]:
    body = ChatCompletionChunk(id=ctx.id, created=ctx.created, model=ctx.model, choices=choices, **extra)
    return {"data": body.model_dump_json()}  # pydantic-core's JSON: json.dumps' bytes, twice as fast


def _finish_chunk(ctx: StreamContext, stream: ChoiceStream, result: AgentResult) -> dict[str, str]:
    last = stream.finish(result)
    extras: dict[str, Any] = {"search_results": render.search_results_of(result.searches)}
    if ctx.return_trace:
        trace = render.trace_of([result], ctx.mode, ctx.limits, first_choice=stream.index)
        extras["trace"] = {**trace, **ctx.trace_extras()}
    return _chunk(ctx, [last], **extras)
