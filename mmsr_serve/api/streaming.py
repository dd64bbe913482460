"""Agent events as OpenAI ``chat.completion.chunk`` server-sent events.

Order, per choice: a role chunk; ``delta.reasoning_content`` (and ``delta.reasoning``) while the
model thinks, live; ``delta.search_events`` when a search starts and when it finishes (mmsr
extension: a one-entry list, its ``index`` counting the choice's events, so that delta accumulators
append events instead of merging them);
the answer as ``delta.content``; a finish chunk carrying ``finish_reason``, ``delta.annotations``
and (mmsr) ``search_results`` and, with ``return_trace``, ``trace``. Then, with
``stream_options.include_usage``, one chunk with empty ``choices`` and ``usage``; then ``[DONE]``.

In the search modes the answer is sent once the run has ended (answers are short, and only then
is it known which turn's answer is final); with ``search_mode: off`` the reply streams live.
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
    Finished,
    SearchFinished,
    SearchStarted,
    TextDelta,
    TurnFinished,
)
from mmsr_serve.agent.limits import Limits
from mmsr_serve.api import render
from mmsr_serve.api.errors import error_body
from mmsr_serve.api.runs import Events
from mmsr_serve.api.schemas import ChatCompletionChunk, ChoiceDelta, ChunkChoice

logger = logging.getLogger("mmsr.api")

_OPEN, _CLOSE = "<reason>", "</reason>"
_ENDS = (_CLOSE, "<answer>", "<search>", "<text_search>")


def _partial_suffix(text: str, tokens: Sequence[str]) -> int:
    """Length of the longest end of ``text`` that could start one of ``tokens``."""
    best = 0
    for token in tokens:
        for size in range(min(len(token) - 1, len(text)), best, -1):
            if token.startswith(text[-size:]):
                best = size
                break
    return best


def live_reasoning(raw: str) -> str:
    """The part of a turn's first ``<reason>`` block that is certain so far (stripped)."""
    start = raw.find(_OPEN)
    if start < 0:
        return ""
    body = raw[start + len(_OPEN) :]
    end = body.find(_CLOSE)
    if end >= 0:
        return body[:end].strip()
    # No </reason> yet: an action tag may still end the reasoning (a model that forgot to close
    # it), so stop before any of them, as the parser does once the turn is complete.
    cuts = [i for i in (body.find(tag) for tag in _ENDS) if i >= 0]
    body = body[: min(cuts)] if cuts else body[: len(body) - _partial_suffix(body, _ENDS)]
    return body.strip()


def live_content(raw: str, stops: Sequence[str]) -> str:
    """The part of a plain (``off`` mode) reply that is certain so far."""
    text = raw.lstrip()
    cut = render.cut_at_stop(text, stops)
    if cut != text:
        return cut
    return text[: len(text) - _partial_suffix(text, stops)].rstrip()


class _Growing:
    """Text sent in pieces, each new piece what a longer certain prefix adds."""

    def __init__(self) -> None:
        self.sent = ""

    def advance(self, certain: str) -> str:
        if len(certain) <= len(self.sent) or not certain.startswith(self.sent):
            return ""
        piece, self.sent = certain[len(self.sent) :], certain
        return piece


@dataclass
class ChoiceStream:
    """The deltas of one choice, from its events."""

    index: int
    mode: str
    stops: Sequence[str]

    def __post_init__(self) -> None:
        self._raw = ""
        self._reasoning = _Growing()
        self._content = _Growing()
        self._reasoned = False  # reasoning was sent in an earlier turn: separate with a blank line
        self._turn_reasoned = False
        self._search_events = 0

    def on_event(self, event: object) -> list[ChoiceDelta]:
        if isinstance(event, TextDelta):
            self._raw += event.text
            if self.mode == "off":
                piece = self._content.advance(live_content(self._raw, self.stops))
                return [ChoiceDelta(content=piece)] if piece else []
            return self._reasoning_delta(self._reasoning.advance(live_reasoning(self._raw)))
        if isinstance(event, TurnFinished):
            piece = self._reasoning.advance(event.record.parsed.reasoning) if self.mode != "off" else ""
            deltas = self._reasoning_delta(piece)
            self._raw, self._reasoning, self._turn_reasoned = "", _Growing(), False
            return deltas
        if isinstance(event, SearchStarted):
            return self._search_delta(
                {"status": "started", "kind": event.kind, "query": event.query, "turn": event.turn}
            )
        if isinstance(event, SearchFinished):
            return self._search_delta({"status": "finished", **render.search_event(event.record)})
        return []

    def finish(self, result: AgentResult) -> tuple[list[ChunkChoice], ChunkChoice]:
        """The rest of the answer, then the finish chunk's choice."""
        content = render.content_of(result, self.stops)
        piece = self._content.advance(content)
        pieces = [ChunkChoice(index=self.index, delta=ChoiceDelta(content=piece))] if piece else []
        annotations = render.annotations_of(result, content)
        last = ChunkChoice(
            index=self.index,
            delta=ChoiceDelta(annotations=annotations or None),
            finish_reason=render.finish_reason_of(result, self.stops),
        )
        return pieces, last

    def _search_delta(self, search: dict[str, Any]) -> list[ChoiceDelta]:
        index, self._search_events = self._search_events, self._search_events + 1
        return [ChoiceDelta(search_events=[{"index": index, **search}])]

    def _reasoning_delta(self, piece: str) -> list[ChoiceDelta]:
        if not piece:
            return []
        text = ("\n\n" if self._reasoned and not self._turn_reasoned else "") + piece
        self._reasoned = self._turn_reasoned = True
        return [ChoiceDelta(reasoning_content=text, reasoning=text)]


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
    streams = [ChoiceStream(i, ctx.mode, ctx.stops) for i in range(ctx.n)]
    results: list[AgentResult] = []
    try:
        for i in range(ctx.n):
            yield _chunk(ctx, [ChunkChoice(index=i, delta=ChoiceDelta(role="assistant", content=""))])
        async with aclosing(events):
            async for index, event in events:
                if isinstance(event, Finished):
                    results.append(event.result)
                    for item in _finish_chunks(ctx, streams[index], event.result):
                        yield item
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
    return _sse(body.model_dump(mode="json"))


def _finish_chunks(ctx: StreamContext, stream: ChoiceStream, result: AgentResult) -> list[dict[str, str]]:
    pieces, last = stream.finish(result)
    extras: dict[str, Any] = {"search_results": render.search_results_of(result.searches)}
    if ctx.return_trace:
        trace = render.trace_of([result], ctx.mode, ctx.limits, first_choice=stream.index)
        extras["trace"] = {**trace, **ctx.trace_extras()}
    return [*(_chunk(ctx, [piece]) for piece in pieces), _chunk(ctx, [last], **extras)]
