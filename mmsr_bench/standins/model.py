"""A stand-in for ``vllm serve``: an OpenAI-compatible model server that plays the search protocol.

No GPU and no script: each reply is read off the conversation it answers (:mod:`.play`), so
``mmsr serve`` (``--backend openai``) and a hand-written client loop run against it alike.

Routes: ``GET /v1/models``, ``POST /v1/chat/completions``, ``GET /health``, ``GET /standin/stats``,
``POST /standin/reset`` (the counters and lag probe are described in :mod:`._runtime`).

On the wire it behaves like vLLM:

- ``stop`` (a string or a list): the text is cut before the first stop string found, which is
  dropped (kept with ``include_stop_str_in_output``) and named in the choice's ``stop_reason``;
  ``finish_reason`` "stop". mmsr sends the actions' closing tags as stops and re-appends the one
  named in ``stop_reason``, so it reads the turns back whole.
- ``max_tokens`` (or ``max_completion_tokens``): past it the text is cut, ``finish_reason``
  "length", ``stop_reason`` null. Tokens are whitespace-separated words; prompt tokens are the
  characters of the text parts / 4 plus ``image_tokens`` per image part.
- ``stream``: SSE ``chat.completion.chunk`` events: the role, content deltas of ``chunk_tokens``
  tokens, a last chunk with ``finish_reason`` and ``stop_reason``, a usage chunk when
  ``stream_options.include_usage``, then ``data: [DONE]``. A ``model`` it does not serve is a 404.

Timing: the first token comes after a draw of ``latency`` (see :mod:`.latency`), each next one
``1 / tokens_per_s`` later (0: all at once). A streamed chunk leaves when its last token is ready,
a non-streamed reply when the whole text is. Only ``asyncio.sleep`` waits.

Faults (``faults``, :mod:`.faults`): some requests, drawn from the seeded random source, get
what a model server does on a bad day: 503, 429 with ``Retry-After``, a 500 echoing the
``Authorization`` header, a malformed event, a stream cut without a finish, a dropped connection,
a dripped or a hung answer; counted in the stats' ``faults``.

Stats (``GET /standin/stats``): ``requests`` (chat completions received), ``by_trajectory``
(conversations started, i.e. turn-1 requests, per trajectory), ``by_turn`` (requests per turn
number, from 1), ``streamed``, ``prompt_tokens``, ``completion_tokens``, ``errors`` (refused
requests), ``in_flight`` / ``max_in_flight``, and the loop lag with ``saturated``.

Throughput, measured on the 2-core development box (server pinned to one core with ``taskset``,
the client on the other, latency 0, uvicorn on asyncio + h11: neither uvloop nor httptools is
installed), 32 requests in flight on keep-alive connections: about 3,000 non-streamed and 3,000
streamed (unpaced) chat completions per second, 0.3 ms of server CPU each, with a minimal asyncio
client or aiohttp. Through one ``httpx.AsyncClient`` with 32 connections only about 330 a second
get through, and the server's core stays mostly idle: httpcore's pool, not the stand-in, is then
the limit (and it is the same pool under openai-python).
"""

from __future__ import annotations

import asyncio
import itertools
import random
import re
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from mmsr_bench.standins._runtime import (
    InFlight,
    LoopLag,
    admin_routes,
    dumps,
    error_response,
    json_response,
    lifespan_with,
    loads,
)
from mmsr_bench.standins.faults import MODEL_FAULTS, parse_faults
from mmsr_bench.standins.latency import parse_latency
from mmsr_bench.standins.play import DEFAULT_MIX, Play, parse_mix, play

__all__ = ["ModelConfig", "ModelStandIn", "Reply", "cut_reply", "model_app"]

_TOKEN = re.compile(r"\s*\S+")


@dataclass(frozen=True)
class ModelConfig:
    """What the model stand-in plays and how fast. Strings are checked here (ValueError)."""

    model_name: str = "mmsr-standin"
    latency: str = "0"
    """Time to the first token of each turn (:mod:`.latency` forms)."""
    tokens_per_s: float = 0.0
    """Pace of the tokens after the first; 0: no pacing."""
    mix: str = DEFAULT_MIX
    seed: int = 0
    reasoning_words: int = 30
    image_tokens: int = 256
    """Prompt tokens counted per image part."""
    chunk_tokens: int = 4
    """Tokens per streamed content delta."""
    faults: str = ""
    """Faults drawn per request (:mod:`.faults`: ``5xx=0.02,malformed=0.01``); none by default."""
    hang_s: float = 30.0
    drip_s: float = 0.5

    def __post_init__(self) -> None:
        parse_latency(self.latency)
        parse_faults(self.faults, MODEL_FAULTS, hang_s=self.hang_s, drip_s=self.drip_s)
        parse_mix(self.mix)
        if self.tokens_per_s < 0 or self.reasoning_words < 0 or self.image_tokens < 0:
            raise ValueError("tokens_per_s, reasoning_words and image_tokens must be 0 or more")
        if self.chunk_tokens < 1:
            raise ValueError("chunk_tokens must be 1 or more")


@dataclass(frozen=True)
class Reply:
    """A turn as the wire carries it: its tokens (their concatenation is the content)."""

    tokens: tuple[str, ...]
    finish_reason: str
    stop_reason: str | None = None

    @property
    def text(self) -> str:
        return "".join(self.tokens)


def cut_reply(
    text: str, stops: Sequence[str], max_tokens: int | None, *, include_stop: bool = False
) -> Reply:
    """``text`` as vLLM returns it under ``stop`` and ``max_tokens`` (see the module docstring)."""
    found = [(pos, s) for s in stops if s and (pos := text.find(s)) >= 0]
    stop_reason = None
    if found:
        pos, stop_reason = min(found)
        text = text[: pos + len(stop_reason)] if include_stop else text[:pos]
    tokens = tuple(_TOKEN.findall(text))
    if max_tokens is not None and len(tokens) > max_tokens:
        return Reply(tokens[:max_tokens], "length")
    return Reply(tokens, "stop", stop_reason)


def prompt_tokens(messages: Sequence[Any], image_tokens: int) -> int:
    """A cheap count: characters of the text parts / 4, plus ``image_tokens`` per image part."""
    chars = images = 0
    for message in messages:
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, str):
            chars += len(content)
        elif isinstance(content, list):
            for part in content:
                if not isinstance(part, dict):
                    continue
                if part.get("type") == "text" and isinstance(part.get("text"), str):
                    chars += len(part["text"])
                elif part.get("type") in ("image_url", "input_image", "image"):
                    images += 1
    return chars // 4 + images * image_tokens


@dataclass
class _Stats:
    requests: int = 0
    streamed: int = 0
    completion_tokens: int = 0
    prompt_tokens: int = 0
    errors: int = 0
    by_trajectory: Counter[str] = field(default_factory=Counter)
    by_turn: Counter[str] = field(default_factory=Counter)
    faults: Counter[str] = field(default_factory=Counter)


class ModelStandIn:
    """The model stand-in's state (config, random source, counters) and its Starlette :attr:`app`."""

    def __init__(self, config: ModelConfig | None = None) -> None:
        self.config = config or ModelConfig()
        self.latency = parse_latency(self.config.latency)
        self.mix = parse_mix(self.config.mix)
        c = self.config
        self.faults = parse_faults(c.faults, MODEL_FAULTS, hang_s=c.hang_s, drip_s=c.drip_s)
        self.rng = random.Random(self.config.seed)
        self.stats = _Stats()
        self.in_flight = InFlight()
        self.lag = LoopLag()
        self._ids = itertools.count(1)
        self.app = Starlette(
            routes=[
                Route("/v1/models", self._models),
                Route("/v1/chat/completions", self._chat, methods=["POST"]),
                *admin_routes(self.snapshot, self.reset),
            ],
            lifespan=lifespan_with(self.lag),
        )
        self.app.state.standin = self

    def snapshot(self) -> dict[str, Any]:
        """The counters, as ``GET /standin/stats`` returns them."""
        s = self.stats
        return {
            "requests": s.requests,
            "by_trajectory": dict(s.by_trajectory),
            "by_turn": dict(s.by_turn),
            "streamed": s.streamed,
            "completion_tokens": s.completion_tokens,
            "prompt_tokens": s.prompt_tokens,
            "errors": s.errors,
            "faults": dict(s.faults),
            "in_flight": self.in_flight.now,
            "max_in_flight": self.in_flight.most,
            **self.lag.report(),
        }

    def reset(self) -> None:
        """Zero the counters and forget the lag samples."""
        self.stats = _Stats()
        self.in_flight.reset()
        self.lag.samples.clear()

    async def _models(self, request: Request) -> Response:
        name = self.config.model_name
        card = {"id": name, "object": "model", "created": 0, "owned_by": "mmsr-standin", "root": name}
        return json_response({"object": "list", "data": [card]})

    async def _chat(self, request: Request) -> Response:
        self.in_flight.enter()
        streaming = False
        try:
            body = await self._body(request)
            if isinstance(body, Response):
                self.stats.errors += 1
                return body
            turn = play(
                body["messages"], self.mix, seed=self.config.seed, reasoning_words=self.config.reasoning_words
            )
            reply, usage = self._reply(body, turn)
            if (fault := self.faults.draw(self.rng)) is not None:
                self.stats.faults[fault] += 1
                answer = await self._fault(fault, request, body, reply, usage)
                if answer is not None:
                    streaming = isinstance(answer, _TrackedStream)
                    return answer
            first_s = self.latency.sample(self.rng)
            step_s = 1.0 / self.config.tokens_per_s if self.config.tokens_per_s > 0 else 0.0
            if not body.get("stream"):
                await _wait(first_s + step_s * max(0, len(reply.tokens) - 1))
                return json_response(self._completion(reply, usage))
            options = body.get("stream_options")
            include_usage = isinstance(options, dict) and bool(options.get("include_usage"))
            head, chunks, tail = self._sse(reply, usage if include_usage else None)
            if step_s == 0:  # nothing to pace: the whole stream in one write
                await _wait(first_s)
                return Response(head + b"".join(chunks) + tail, media_type="text/event-stream")
            size, count = self.config.chunk_tokens, len(reply.tokens)
            ready = [first_s + step_s * (min(i + size, count) - 1) for i in range(0, count, size)]
            streaming = True
            return _TrackedStream(_paced(head, chunks, tail, first_s, ready), self.in_flight.leave)
        finally:
            if not streaming:  # a paced stream leaves the gauge when it ends
                self.in_flight.leave()

    async def _fault(
        self, kind: str, request: Request, body: dict[str, Any], reply: Reply, usage: dict[str, int]
    ) -> Response | None:
        """The faulty answer of ``kind`` (:mod:`.faults`); None: go on and answer normally."""
        if kind == "5xx":
            return error_response(503, "stand-in fault: the server is overloaded", "ServiceUnavailableError")
        if kind == "429":
            return error_response(429, "stand-in fault: too many requests", "RateLimitError", retry_after_s=1)
        if kind == "echo":
            echoed = request.headers.get("authorization", "")
            message = f"stand-in fault: upstream refused Authorization: {echoed}"
            return error_response(500, message, "InternalServerError")
        if kind == "hang":
            await asyncio.sleep(self.faults.hang_s)
            return None
        if not body.get("stream"):
            if kind in ("drip", "reset"):
                await asyncio.sleep(self.faults.drip_s)
                return None
            return Response(b'{"id": "chatcmpl-standin", "choices": [', media_type="application/json")
        options = body.get("stream_options")
        include_usage = isinstance(options, dict) and bool(options.get("include_usage"))
        head, chunks, tail = self._sse(reply, usage if include_usage else None)
        events: AsyncIterator[bytes]
        if kind == "drip":
            events = _dripped([head, *chunks, tail], self.faults.drip_s)
        elif kind == "malformed":
            events = _dripped([head, b"data: {not json\n\n", *chunks, tail], 0)
        elif kind == "cut":
            events = _dripped([head, *chunks[:1]], 0)
        else:
            events = _dropped([head, *chunks[:1]])
        return _TrackedStream(events, self.in_flight.leave)

    async def _body(self, request: Request) -> dict[str, Any] | Response:
        """The request, checked as far as the stand-in needs; an error response otherwise."""
        try:
            body = loads(await request.body())
        except ValueError:
            return error_response(400, "the request body is not JSON")
        if not isinstance(body, dict) or not isinstance(body.get("messages"), list) or not body["messages"]:
            return error_response(400, "messages: a non-empty list is required")
        model = body.get("model")
        if model is not None and model != self.config.model_name:
            return error_response(404, f"The model `{model}` does not exist.", "NotFoundError")
        limit = body.get("max_tokens", body.get("max_completion_tokens"))
        if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool) or limit < 1):
            return error_response(400, "max_tokens must be a positive integer")
        return body

    def _reply(self, body: dict[str, Any], turn: Play) -> tuple[Reply, dict[str, int]]:
        stop = body.get("stop") or []
        stops = [stop] if isinstance(stop, str) else [s for s in stop if isinstance(s, str)]
        limit = body.get("max_tokens", body.get("max_completion_tokens"))
        reply = cut_reply(turn.text, stops, limit, include_stop=bool(body.get("include_stop_str_in_output")))
        prompt = prompt_tokens(body["messages"], self.config.image_tokens)
        s = self.stats
        s.requests += 1
        s.streamed += bool(body.get("stream"))
        s.by_turn[str(turn.turn)] += 1
        if turn.turn == 1:
            s.by_trajectory[turn.trajectory] += 1
        s.prompt_tokens += prompt
        s.completion_tokens += len(reply.tokens)
        usage = {
            "prompt_tokens": prompt,
            "completion_tokens": len(reply.tokens),
            "total_tokens": prompt + len(reply.tokens),
        }
        return reply, usage

    def _completion(self, reply: Reply, usage: dict[str, int]) -> dict[str, Any]:
        message = {"role": "assistant", "content": reply.text, "tool_calls": []}
        choice = {
            "index": 0,
            "message": message,
            "logprobs": None,
            "finish_reason": reply.finish_reason,
            "stop_reason": reply.stop_reason,
        }
        return self._envelope("chat.completion", self._new_id(), [choice], usage=usage)

    def _sse(self, reply: Reply, usage: dict[str, int] | None) -> tuple[bytes, list[bytes], bytes]:
        """The stream's events: the role chunk, the content chunks, and the finish, usage and DONE."""
        size, ident = self.config.chunk_tokens, self._new_id()
        head = self._chunk(ident, {"role": "assistant", "content": ""})
        chunks = [
            self._chunk(ident, {"content": "".join(reply.tokens[i : i + size])})
            for i in range(0, len(reply.tokens), size)
        ]
        tail = self._chunk(ident, {}, reply.finish_reason, reply.stop_reason)
        if usage is not None:
            tail += _event(self._envelope("chat.completion.chunk", ident, [], usage=usage))
        return head, chunks, tail + b"data: [DONE]\n\n"

    def _chunk(
        self, ident: str, delta: dict[str, Any], finish: str | None = None, stop: str | None = None
    ) -> bytes:
        choice: dict[str, Any] = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        if finish is not None:
            choice["stop_reason"] = stop
        return _event(self._envelope("chat.completion.chunk", ident, [choice]))

    def _new_id(self) -> str:
        return f"chatcmpl-standin-{next(self._ids)}"

    def _envelope(self, kind: str, ident: str, choices: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
        return {
            "id": ident,
            "object": kind,
            "created": int(time.time()),
            "model": self.config.model_name,
            "choices": choices,
            **extra,
        }


async def _wait(seconds: float) -> None:
    if seconds > 0:  # a zero sleep would still cost a trip through the event loop
        await asyncio.sleep(seconds)


async def _paced(
    head: bytes, chunks: list[bytes], tail: bytes, first_s: float, ready_s: list[float]
) -> AsyncIterator[bytes]:
    """``head`` after ``first_s``, each chunk at its ``ready_s`` (from now), then ``tail``."""
    start = time.perf_counter()
    await asyncio.sleep(first_s)
    yield head
    for chunk, due in zip(chunks, ready_s, strict=True):
        wait = due - (time.perf_counter() - start)
        if wait > 0:
            await asyncio.sleep(wait)
        yield chunk
    yield tail


async def _dripped(events: list[bytes], every_s: float) -> AsyncIterator[bytes]:
    for event in events:
        await _wait(every_s)
        yield event


async def _dropped(events: list[bytes]) -> AsyncIterator[bytes]:
    for event in events:
        yield event
    raise ConnectionResetError("stand-in fault: the connection is dropped")


def _event(payload: dict[str, Any]) -> bytes:
    return b"data: " + dumps(payload) + b"\n\n"


class _TrackedStream(StreamingResponse):
    """An SSE response that calls ``done()`` once it is over, sent whole or cut off."""

    def __init__(self, events: AsyncIterator[bytes], done: Callable[[], None]) -> None:
        super().__init__(events, media_type="text/event-stream")
        self._done = done

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self._done()


def model_app(config: ModelConfig | None = None) -> Starlette:
    """The model stand-in's ASGI app; its :class:`ModelStandIn` is ``app.state.standin``."""
    return ModelStandIn(config).app
