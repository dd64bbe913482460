"""Sending one chat completion and recording it (:class:`~mmsr_bench.load.records.RequestRecord`).

The bench talks HTTP with httpx and parses server-sent events itself, so that the measuring
client costs little next to what it measures. Against ``mmsr serve`` the request asks for
``return_trace``; turns, searches (kind, latency, cache status, provider) and the estimated
search cost come from the trace. Against a plain model server there is no trace: one turn, no
searches.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import httpx

from mmsr_bench.load.records import RequestRecord, SearchCall
from mmsr_serve.fastjson import loads as _loads

__all__ = ["read_trace", "send_chat"]


async def send_chat(
    client: httpx.AsyncClient,
    url: str,
    body: Mapping[str, Any],
    record: RequestRecord,
    *,
    headers: Mapping[str, str] | None = None,
) -> RequestRecord:
    """POST ``body`` to ``url`` and fill ``record`` (its ``start_s`` is set by the caller).

    Never raises for what the server or the network does: a failed request is a record with its
    status and error, because a load benchmark counts failures."""
    started = time.perf_counter()
    try:
        if body.get("stream"):
            await _streamed(client, url, body, record, started, headers)
        else:
            response = await client.post(url, json=body, headers=headers)
            record.status = response.status_code
            if response.status_code != 200:
                record.error = _error_of(_json_or_none(response.content), response.status_code)
            else:
                _read_completion(_loads(response.content), record)
    except httpx.HTTPError as exc:
        record.error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    except (ValueError, TypeError, AttributeError, KeyError) as exc:  # JSON not shaped as expected
        record.error = f"bad response body: {type(exc).__name__}: {exc}"
    record.latency_s = time.perf_counter() - started
    return record


async def _streamed(
    client: httpx.AsyncClient,
    url: str,
    body: Mapping[str, Any],
    record: RequestRecord,
    started: float,
    headers: Mapping[str, str] | None,
) -> None:
    async with client.stream("POST", url, json=body, headers=headers) as response:
        record.status = response.status_code
        if response.status_code != 200:
            record.error = _error_of(_json_or_none(await response.aread()), response.status_code)
            return
        answer: list[str] = []
        done = False
        async for line in response.aiter_lines():
            if not line.startswith("data:"):
                continue
            data = line[5:].strip()
            if data == "[DONE]":
                done = True
                break
            chunk = _loads(data)
            if "error" in chunk:
                record.error = _error_of(chunk, 200)
                continue
            now = time.perf_counter() - started
            for choice in chunk.get("choices") or ():
                delta = choice.get("delta") or {}
                content = delta.get("content")
                text = content or delta.get("reasoning_content") or delta.get("reasoning")
                if text and record.ttft_s is None:
                    record.ttft_s = now
                if content:
                    if record.ttfa_s is None:
                        record.ttfa_s = now
                    answer.append(content)
                if choice.get("finish_reason"):
                    record.finish_reason = choice["finish_reason"]
            if chunk.get("usage"):
                _read_usage(chunk["usage"], record)
            if chunk.get("trace"):
                read_trace(chunk["trace"], record)
        record.answer = "".join(answer) if answer else None
        if not done and record.error is None:
            record.error = "the stream ended without [DONE]"
        if record.turns == 0 and record.finish_reason is not None:
            record.turns = 1


def _read_completion(payload: dict[str, Any], record: RequestRecord) -> None:
    choices = payload.get("choices") or [{}]
    record.finish_reason = choices[0].get("finish_reason")
    record.answer = (choices[0].get("message") or {}).get("content")
    _read_usage(payload.get("usage") or {}, record)
    if payload.get("trace"):
        read_trace(payload["trace"], record)
    else:
        record.turns = 1


def _read_usage(usage: dict[str, Any], record: RequestRecord) -> None:
    record.prompt_tokens = int(usage.get("prompt_tokens") or 0)
    record.completion_tokens = int(usage.get("completion_tokens") or 0)


def read_trace(trace: dict[str, Any], record: RequestRecord) -> None:
    """Turns, searches and cost from an mmsr ``trace`` (first choice only: the bench sends n=1)."""
    steps = [s for s in trace.get("steps") or () if s.get("choice", 0) == 0]
    record.turns = sum(s.get("type") == "turn" for s in steps)
    record.searches = [
        SearchCall(
            kind=str(s.get("kind")),
            latency_s=float(s.get("latency_ms") or 0.0) / 1000,
            provider=s.get("provider"),
            cached=bool(s.get("cached")),
            error=s.get("error"),
        )
        for s in steps
        if s.get("type") == "search"
    ]
    record.cost_usd = float((trace.get("cost") or {}).get("estimated_usd") or 0.0)


def _json_or_none(raw: bytes) -> Any:
    try:
        return _loads(raw) if raw else None
    except ValueError:
        return None


def _error_of(payload: Any, status: int) -> str:
    error = payload.get("error") if isinstance(payload, dict) else None
    if isinstance(error, dict):
        code = error.get("code") or error.get("type") or status
        return f"{code}: {error.get('message', '')}".strip()
    return f"HTTP {status}"
