"""A stand-in OpenAI-compatible model server, as ``vllm serve`` behaves on the wire.

Replies are scripted (``server.enqueue(text, ...)``). Like vLLM it cuts the text *before* the first
stop string, drops the stop string and names it in the choice's ``stop_reason``; it counts
``max_tokens`` in words (``finish_reason`` "length"); it streams the text word by word with a usage
chunk when asked. Special replies: an ``int`` answers with that HTTP status, a :class:`Failure`
with a status and message, a :class:`Malformed` with a broken stream; :data:`BLOCK` sends one
delta and then hangs until the client goes away, recording the cancellation in ``cancelled``.
Every request body is kept in ``requests``.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

BLOCK = object()


@dataclass(frozen=True)
class Failure:
    """An error answer with this status and message ("{authorization}" is replaced by the
    request's Authorization header, as a server that echoes it would)."""

    status: int
    message: str


@dataclass(frozen=True)
class Malformed:
    """A stream whose second event's data is ``event`` (not JSON, say)."""

    event: str


MODEL = "mmsr-7b"


class ModelServer:
    def __init__(self, model: str = MODEL) -> None:
        self.model = model
        self.url = ""
        self.replies: deque[Any] = deque()
        self.requests: list[dict[str, Any]] = []
        self.blocked = threading.Event()
        self.cancelled = threading.Event()
        self.app = Starlette(
            routes=[
                Route("/v1/models", self._models),
                Route("/v1/chat/completions", self._chat, methods=["POST"]),
            ]
        )

    def enqueue(self, *replies: Any) -> None:
        self.replies.extend(replies)

    async def _models(self, request: Request) -> Response:
        return JSONResponse({"object": "list", "data": [{"id": self.model, "object": "model"}]})

    async def _chat(self, request: Request) -> Response:
        body = await request.json()
        self.requests.append(body)
        reply = self.replies.popleft() if self.replies else 500
        if isinstance(reply, int):
            error = {"message": f"scripted status {reply}", "type": "server_error", "code": reply}
            return JSONResponse({"error": error}, status_code=reply)
        if isinstance(reply, Failure):
            message = reply.message.replace("{authorization}", request.headers.get("authorization", ""))
            error = {"message": message, "type": "BadRequestError", "code": reply.status}
            return JSONResponse({"error": error}, status_code=reply.status)
        if isinstance(reply, Malformed):
            return StreamingResponse(self._malformed(reply.event), media_type="text/event-stream")
        if reply is BLOCK:
            return StreamingResponse(self._blocking(), media_type="text/event-stream")
        text, finish, stop_reason = _apply_limits(reply, body)
        prompt_tokens = sum(len(json.dumps(m["content"]).split()) for m in body["messages"])
        usage = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": len(text.split()),
            "total_tokens": prompt_tokens + len(text.split()),
        }
        if not body.get("stream"):
            message = {"role": "assistant", "content": text}
            choice = {"index": 0, "message": message, "finish_reason": finish, "stop_reason": stop_reason}
            return JSONResponse(_envelope("chat.completion", [choice], usage=usage))
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        return StreamingResponse(
            self._stream(text, finish, stop_reason, usage if include_usage else None),
            media_type="text/event-stream",
        )

    async def _stream(
        self, text: str, finish: str, stop_reason: str | None, usage: dict[str, int] | None
    ) -> AsyncIterator[str]:
        yield _event([{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}])
        words = text.split(" ")
        for i, word in enumerate(words):
            piece = word if i == len(words) - 1 else word + " "
            yield _event([{"index": 0, "delta": {"content": piece}, "finish_reason": None}])
        last = {"index": 0, "delta": {}, "finish_reason": finish, "stop_reason": stop_reason}
        yield _event([last])
        if usage is not None:
            yield _event([], usage=usage)
        yield "data: [DONE]\n\n"

    async def _malformed(self, event: str) -> AsyncIterator[str]:
        yield _event([{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}])
        yield f"data: {event}\n\n"

    async def _blocking(self) -> AsyncIterator[str]:
        yield _event(
            [{"index": 0, "delta": {"role": "assistant", "content": "<reason>"}, "finish_reason": None}]
        )
        self.blocked.set()
        try:
            await asyncio.sleep(3600)
        except BaseException:
            self.cancelled.set()
            raise
        yield "data: [DONE]\n\n"


def _apply_limits(text: str, body: dict[str, Any]) -> tuple[str, str, str | None]:
    stops = body.get("stop") or []
    stops = [stops] if isinstance(stops, str) else stops
    found = [(text.find(s), s) for s in stops if s in text]
    stop_reason = None
    if found:
        pos, stop_reason = min(found)
        text = text[:pos]
    words = text.split()
    max_tokens = body.get("max_tokens") or body.get("max_completion_tokens")
    if max_tokens and len(words) > max_tokens:
        return " ".join(words[:max_tokens]), "length", None
    return text, "stop", stop_reason


def _envelope(kind: str, choices: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    return {
        "id": "cmpl-standin",
        "object": kind,
        "created": int(time.time()),
        "model": MODEL,
        "choices": choices,
        **extra,
    }


def _event(choices: list[dict[str, Any]], **extra: Any) -> str:
    return f"data: {json.dumps(_envelope('chat.completion.chunk', choices, **extra))}\n\n"
