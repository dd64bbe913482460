"""From agent results to OpenAI response pieces: message, annotations, usage, search results, trace.

- ``content`` is the final answer, cut before the first of the request's ``stop`` sequences; ""
  when the model never answered (``finish_reason`` ``max_turns``, ``invalid``, or ``length`` in the
  search modes).
- ``annotations`` hold a ``url_citation`` for every source shown to the model, spanning the whole
  answer (the model does not say which source supports which words).
- ``usage`` sums every model turn of every choice; ``num_search_queries`` counts the searches run.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

from mmsr_serve.agent.events import AgentResult, SearchRecord
from mmsr_serve.agent.limits import Limits
from mmsr_serve.agent.protocol import cut_at_stop
from mmsr_serve.api.schemas import Annotation, SearchResult, URLCitation, Usage
from mmsr_serve.search.base import TextHit

SNIPPET_CHARS = 300


def content_of(result: AgentResult, stops: Sequence[str]) -> str:
    return cut_at_stop(result.answer or "", stops)


def finish_reason_of(result: AgentResult, stops: Sequence[str]) -> str:
    """The agent's reason; ``stop`` when a request stop sequence cut the answer short."""
    answer = result.answer or ""
    if any(s in answer for s in stops):
        return "stop"
    return result.finish_reason


def reasoning_of(result: AgentResult) -> str | None:
    return result.reasoning or None


def search_results_of(searches: Sequence[SearchRecord]) -> list[SearchResult]:
    seen: set[tuple[str, str]] = set()
    out: list[SearchResult] = []
    for record in searches:
        for hit in record.hits:
            key = (record.kind, hit.url)
            if not hit.url or key in seen:
                continue
            seen.add(key)
            snippet = hit.text[:SNIPPET_CHARS] if isinstance(hit, TextHit) else ""
            out.append(SearchResult(title=hit.title, url=hit.url, snippet=snippet, kind=record.kind))
    return out


def annotations_of(result: AgentResult, content: str) -> list[Annotation]:
    titles: dict[str, str] = {}
    for record in result.searches:
        for hit in record.hits:
            if hit.url:
                titles.setdefault(hit.url, hit.title)
    return [
        Annotation(url_citation=URLCitation(start_index=0, end_index=len(content), title=title, url=url))
        for url, title in titles.items()
    ]


def usage_of(results: Sequence[AgentResult]) -> Usage:
    prompt = sum(r.usage.prompt_tokens for r in results)
    completion = sum(r.usage.completion_tokens for r in results)
    calls = {kind: sum(r.search_calls[kind] for r in results) for kind in ("image", "text")}
    return Usage(
        completion_tokens=completion,
        prompt_tokens=prompt,
        total_tokens=prompt + completion,
        num_search_queries=sum(calls.values()),
        search_calls=calls,
    )


def search_event(record: SearchRecord) -> dict[str, Any]:
    """A finished search as shown in traces and in streaming ``delta.search_events``."""
    return {
        "kind": record.kind,
        "query": record.query,
        "turn": record.turn,
        "provider": record.provider,
        "cached": record.cached,
        "error": record.error,
        "latency_ms": round(record.latency_s * 1000, 1),
        "results": [r.model_dump() for r in search_results_of([record])],
    }


def trace_of(
    results: Sequence[AgentResult], mode: str, limits: Limits, *, first_choice: int = 0
) -> dict[str, Any]:
    """Every turn (text, action, latency, tokens) and search (latency, cache status), in order."""
    steps: list[dict[str, Any]] = []
    for choice, result in enumerate(results, start=first_choice):
        for search in result.searches:  # run before the first turn (the ``always`` mode)
            if search.turn == 0:
                steps.append({"choice": choice, "type": "search", **search_event(search)})
        for turn in result.turns:
            parsed = turn.parsed
            steps.append(
                {
                    "choice": choice,
                    "type": "turn",
                    "turn": turn.index,
                    "action": parsed.action,
                    "text": turn.text,
                    "reasoning": parsed.reasoning,
                    "answer": parsed.answer,
                    "query": parsed.query,
                    "format_error": parsed.error,
                    "well_formed": parsed.well_formed,
                    "finish_reason": turn.finish_reason,
                    "latency_ms": round(turn.latency_s * 1000, 1),
                    "prompt_tokens": turn.usage.prompt_tokens,
                    "completion_tokens": turn.usage.completion_tokens,
                }
            )
            for search in result.searches:
                if search.turn == turn.index:
                    steps.append({"choice": choice, "type": "search", **search_event(search)})
        steps.append(
            {
                "choice": choice,
                "type": "finish",
                "finish_reason": result.finish_reason,
                "answer": result.answer,
            }
        )
    return {"search_mode": mode, "limits": asdict(limits), "steps": steps}
