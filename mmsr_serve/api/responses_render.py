"""Agent results as Responses API objects, and agent events as its streaming events.

Output items, in the order the run made them: per model turn, a ``reasoning`` item (its
reasoning as one ``reasoning_text`` part; no summary) and a ``web_search_call`` item per search
(``action``: ``search`` with the text query, ``None`` for an image search, and the pages shown to
the model as ``sources``; mmsr adds ``kind``, ``results``, ``provider``, ``cached``, ``error``,
``latency_ms`` and ``turn``); then the answer as a ``message`` whose ``output_text`` carries a
``url_citation`` annotation per source. A run that ends without an answer (turn or token limit)
is ``incomplete`` with ``incomplete_details.reason`` ``max_output_tokens`` or ``max_turns``, and
has no message.

Streaming: ``response.created``, ``response.in_progress``; each item as
``response.output_item.added``, its parts and deltas (``response.reasoning_text.delta``,
``response.web_search_call.in_progress`` / ``.searching`` / ``.completed``,
``response.output_text.delta`` and ``.annotation.added``), ``response.output_item.done``; then
``response.completed`` (or ``response.incomplete``) carrying the whole response. An error after
the stream began is an ``error`` event followed by ``response.failed``. In the search modes the
answer streams once the run has ended (only then is it known which turn's answer is final).
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import AsyncIterator
from contextlib import aclosing
from typing import Any

from fastapi.responses import JSONResponse, Response

from mmsr_serve.agent.events import (
    AgentResult,
    AnswerDelta,
    Finished,
    ReasoningDelta,
    SearchFinished,
    SearchRecord,
    SearchStarted,
    TextDelta,
    TurnFinished,
)
from mmsr_serve.api import render
from mmsr_serve.api.errors import error_body
from mmsr_serve.api.pipeline import RunInfo
from mmsr_serve.api.responses_request import ResponsesRequest
from mmsr_serve.api.runs import Events

log = logging.getLogger("mmsr.api")
_PREFIX = {"reasoning": "rs", "web_search_call": "ws", "message": "msg"}
_INCOMPLETE = {"length": "max_output_tokens"}


class ResponsesRenderer:
    """Renders one request's single run for ``/v1/responses``."""

    def __init__(self, req: ResponsesRequest) -> None:
        self.req = req
        self.hex = uuid.uuid4().hex
        self.id = f"resp_{self.hex}"

    def item_id(self, kind: str, index: int) -> str:
        """Item ids follow the output order, so a stream's items and the final output agree."""
        return f"{_PREFIX[kind]}_{self.hex}_{index}"

    # ---------------------------------------------------------------------------- whole objects

    def response(
        self,
        run: RunInfo,
        status: str,
        output: list[dict[str, Any]],
        results: list[AgentResult] | None = None,
        error: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        req = self.req
        reason = None
        if results and status == "incomplete":
            finish = results[0].finish_reason
            reason = {"reason": _INCOMPLETE.get(finish, finish)}
        body: dict[str, Any] = {
            "id": self.id,
            "object": "response",
            "created_at": run.created,
            "status": status,
            "background": False,
            "error": error,
            "incomplete_details": reason,
            "instructions": req.instructions,
            "max_output_tokens": req.max_output_tokens,
            "max_tool_calls": None,
            "model": run.model,
            "output": output,
            "parallel_tool_calls": True if req.parallel_tool_calls is None else req.parallel_tool_calls,
            "previous_response_id": None,
            "reasoning": {"effort": None, "summary": req.reasoning.summary if req.reasoning else None},
            "store": False,
            "temperature": req.temperature,
            "text": {"format": {"type": "text"}},
            "tool_choice": "auto" if req.tool_choice is None else req.tool_choice,
            "tools": req.tools or [],
            "top_p": req.top_p,
            "truncation": req.truncation or "disabled",
            "usage": _usage(results) if results is not None else None,
            "user": req.user,
            "metadata": req.metadata or {},
        }
        if results is not None:
            searches = [s for r in results for s in r.searches]
            body["search_results"] = [r.model_dump() for r in render.search_results_of(searches)]
            if run.body.return_trace:
                trace = render.trace_of(results, run.body.search_mode, run.limits)
                body["trace"] = {**trace, "cost": run.ledger.summary()}
        return body

    def output_of(self, result: AgentResult, stops: list[str]) -> list[dict[str, Any]]:
        """The output items of a finished run."""
        items: list[dict[str, Any]] = []
        for search in result.searches:  # run before the first turn (the ``always`` mode)
            if search.turn == 0:
                items.append(self.search_item(search, len(items)))
        for turn in result.turns:
            if turn.parsed.reasoning:
                items.append(self.reasoning_item(turn.parsed.reasoning, len(items)))
            for search in result.searches:
                if search.turn == turn.index:
                    items.append(self.search_item(search, len(items)))
        message = self.message_item(result, stops, len(items))
        return items + ([message] if message else [])

    def reasoning_item(self, text: str, index: int, status: str = "completed") -> dict[str, Any]:
        content = [{"type": "reasoning_text", "text": text}] if text else []
        return {
            "id": self.item_id("reasoning", index),
            "type": "reasoning",
            "summary": [],
            "content": content,
            "status": status,
        }

    def search_item(self, record: SearchRecord, index: int) -> dict[str, Any]:
        event = render.search_event(record)
        sources = [{"type": "url", "url": r["url"]} for r in event["results"]]
        return {
            "id": self.item_id("web_search_call", index),
            "type": "web_search_call",
            "status": "failed" if record.error else "completed",
            "action": {"type": "search", "query": record.query, "sources": sources},
            **{k: v for k, v in event.items() if k != "query"},
        }

    def message_item(self, result: AgentResult, stops: list[str], index: int) -> dict[str, Any] | None:
        content = render.content_of(result, stops)
        finish = render.finish_reason_of(result, stops)
        if not content and finish != "stop":
            return None
        return {
            "id": self.item_id("message", index),
            "type": "message",
            "role": "assistant",
            "status": "completed" if finish == "stop" else "incomplete",
            "content": [_output_text(content, result)],
        }

    # ------------------------------------------------------------------------------- renderer

    def json(self, run: RunInfo, results: list[AgentResult]) -> Response:
        result = results[0]
        output = self.output_of(result, run.stops)
        status = _status(result, run.stops)
        return JSONResponse(self.response(run, status, output, results))

    def sse(self, run: RunInfo, events: Events) -> AsyncIterator[dict[str, str]]:
        return _Stream(self, run).events(events)


def _status(result: AgentResult, stops: list[str]) -> str:
    return "completed" if render.finish_reason_of(result, stops) == "stop" else "incomplete"


def _output_text(text: str, result: AgentResult | None) -> dict[str, Any]:
    annotations = _annotations(result, text) if result is not None else []
    return {"type": "output_text", "text": text, "annotations": annotations, "logprobs": []}


def _annotations(result: AgentResult, text: str) -> list[dict[str, Any]]:
    return [
        {"type": "url_citation", **a.url_citation.model_dump()} for a in render.annotations_of(result, text)
    ]


def _usage(results: list[AgentResult]) -> dict[str, Any]:
    usage = render.usage_of(results)
    return {
        "input_tokens": usage.prompt_tokens,
        "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": usage.completion_tokens,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": usage.total_tokens,
        "num_search_queries": usage.num_search_queries,
        "search_calls": usage.search_calls,
    }


class _Stream:
    """The streaming events of one run; items open as their first piece arrives."""

    def __init__(self, renderer: ResponsesRenderer, run: RunInfo) -> None:
        self.r = renderer
        self.run = run
        self.seq = -1
        self.output: list[dict[str, Any]] = []  # finished items, in order
        self.open: dict[str, Any] | None = None  # the item being streamed
        self.open_turn = 0
        self.text = ""  # the open item's text so far

    def _event(self, kind: str, **fields: Any) -> dict[str, str]:
        self.seq += 1
        payload = {"type": kind, "sequence_number": self.seq, **fields}
        return {"event": kind, "data": json.dumps(payload, ensure_ascii=False, separators=(",", ":"))}

    def _open(self, item: dict[str, Any]) -> list[dict[str, str]]:
        self.open, self.text = item, ""
        return [self._event("response.output_item.added", output_index=len(self.output), item=item)]

    def _part(self, stage: str, part: dict[str, Any]) -> dict[str, str]:
        return self._event(f"response.content_part.{stage}", **self._where(), content_index=0, part=part)

    def _where(self) -> dict[str, Any]:
        assert self.open is not None
        return {"item_id": self.open["id"], "output_index": len(self.output)}

    async def events(self, events: Events) -> AsyncIterator[dict[str, str]]:
        r, run = self.r, self.run
        started = r.response(run, "in_progress", [])
        yield self._event("response.created", response=started)
        yield self._event("response.in_progress", response=started)
        try:
            async with aclosing(events):
                async for _, event in events:
                    for out in self._on(event):
                        yield out
        except Exception as exc:
            log.warning("error during a streamed response: %s: %s", type(exc).__name__, exc)
            run.on_error(exc)
            inner = error_body(exc)["error"]
            yield self._event("error", code=inner["code"], message=inner["message"], param=inner["param"])
            error = {"code": inner["code"] or inner["type"], "message": inner["message"]}
            yield self._event("response.failed", response=r.response(run, "failed", self.output, error=error))

    def _on(self, event: object) -> list[dict[str, str]]:
        if isinstance(event, TextDelta):
            if event.reasoning:
                return self._reasoning(event.turn, event.reasoning)
            return self._answer(event.answer) if event.answer else []
        if isinstance(event, ReasoningDelta):
            return self._reasoning(event.turn, event.text)
        if isinstance(event, TurnFinished):
            return self._end_reasoning(event.record.index, event.record.parsed.reasoning)
        if isinstance(event, SearchStarted):
            return self._search_started(event)
        if isinstance(event, SearchFinished):
            return self._search_finished(event.record)
        if isinstance(event, AnswerDelta):
            return self._answer(event.text)
        if isinstance(event, Finished):
            return self._finish(event.result)
        return []

    def _reasoning(self, turn: int, text: str) -> list[dict[str, str]]:
        out: list[dict[str, str]] = []
        if self.open is not None and (self.open["type"] != "reasoning" or self.open_turn != turn):
            out += self._close(None)
        if self.open is None:
            text = text.lstrip("\n")  # the loop's separator between turns' reasoning: items need none
            if not text:
                return out
            self.open_turn = turn
            out += self._open(self.r.reasoning_item("", len(self.output), "in_progress"))
            out.append(self._part("added", {"type": "reasoning_text", "text": ""}))
        self.text += text
        out.append(self._event("response.reasoning_text.delta", **self._where(), content_index=0, delta=text))
        return out

    def _end_reasoning(self, turn: int, text: str) -> list[dict[str, str]]:
        if self.open is None and text:
            return self._reasoning(turn, text) + self._close(text)
        if self.open is not None and self.open["type"] == "reasoning":
            return self._close(text or self.text)
        return []

    def _close(self, final: str | None) -> list[dict[str, str]]:
        """Finish the open reasoning item (``final``: its text as parsed) or search item."""
        item, where = self.open, self._where()
        assert item is not None
        out: list[dict[str, str]] = []
        if item["type"] == "reasoning":
            text = self.text if final is None else final
            out.append(self._event("response.reasoning_text.done", **where, content_index=0, text=text))
            out.append(self._part("done", {"type": "reasoning_text", "text": text}))
            item = self.r.reasoning_item(text, len(self.output))
        out.append(self._event("response.output_item.done", output_index=len(self.output), item=item))
        self.output.append(item)
        self.open, self.text = None, ""
        return out

    def _search_started(self, event: SearchStarted) -> list[dict[str, str]]:
        out = self._close(None) if self.open is not None else []
        item = {
            "id": self.r.item_id("web_search_call", len(self.output)),
            "type": "web_search_call",
            "status": "in_progress",
            "action": {"type": "search", "query": event.query},
            "kind": event.kind,
            "turn": event.turn,
        }
        out += self._open(item)
        out.append(self._event("response.web_search_call.in_progress", **self._where()))
        out.append(self._event("response.web_search_call.searching", **self._where()))
        return out

    def _search_finished(self, record: SearchRecord) -> list[dict[str, str]]:
        out: list[dict[str, str]] = []
        if self.open is None or self.open["type"] != "web_search_call":
            if self.open is not None:
                out += self._close(None)
            out += self._search_started(SearchStarted(record.turn, record.kind, record.query))
        out.append(self._event("response.web_search_call.completed", **self._where()))
        self.open = self.r.search_item(record, len(self.output))
        return out + self._close(None)

    def _answer(self, text: str) -> list[dict[str, str]]:
        out: list[dict[str, str]] = []
        if self.open is not None and self.open["type"] != "message":
            out += self._close(None)
        if self.open is None:
            item = {
                "id": self.r.item_id("message", len(self.output)),
                "type": "message",
                "role": "assistant",
                "status": "in_progress",
                "content": [],
            }
            out += self._open(item)
            out.append(self._part("added", _output_text("", None)))
        self.text += text
        delta = {"content_index": 0, "delta": text, "logprobs": []}
        out.append(self._event("response.output_text.delta", **self._where(), **delta))
        return out

    def _finish(self, result: AgentResult) -> list[dict[str, str]]:
        stops = self.run.stops
        out: list[dict[str, str]] = []
        if self.open is not None and self.open["type"] != "message":
            out += self._close(None)
        message = self.r.message_item(result, stops, len(self.output))
        if message is None and self.open is not None:  # a live reply (``off`` mode) that was cut
            message = {**self.open, "status": "incomplete", "content": [_output_text(self.text, result)]}
        if message is not None:
            content = message["content"][0]
            if self.open is None:  # an answer no delta carried: one delta with all of it
                out += self._answer(content["text"])
            where = self._where()
            text = content["text"]
            out.append(self._event("response.output_text.done", **where, content_index=0, text=text))
            for i, annotation in enumerate(content["annotations"]):
                out.append(
                    self._event(
                        "response.output_text.annotation.added",
                        **where,
                        content_index=0,
                        annotation_index=i,
                        annotation=annotation,
                    )
                )
            out.append(self._part("done", content))
            out.append(self._event("response.output_item.done", output_index=len(self.output), item=message))
            self.output.append(message)
            self.open = None
        status = _status(result, stops)
        final = self.r.response(self.run, status, self.output, [result])
        out.append(self._event(f"response.{status}", response=final))
        return out
