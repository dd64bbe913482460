"""What both stand-ins share: JSON responses, the in-flight gauge, the event-loop lag probe, the lifespan
that runs the probe, and the ``/health``, ``/standin/stats`` and ``/standin/reset`` routes.

Saturation: a background task sleeps 5 ms in a loop and records by how much each sleep overshot.
An idle loop overshoots by well under a millisecond; a loop with more ready work than it can run
overshoots by the time that work takes. The stats report the p50, p99 and max of the last 1,000
samples (about five seconds when idle, longer under load), and ``saturated`` is true when that p99
exceeds 10 ms: the stand-in itself, not the system under test, was then adding latency, and the
benchmark's numbers are suspect.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from mmsr_serve.fastjson import dumps, loads

__all__ = [
    "InFlight",
    "LoopLag",
    "admin_routes",
    "dumps",
    "error_response",
    "json_response",
    "lifespan_with",
    "loads",
]

LAG_INTERVAL_S = 0.005
LAG_WINDOW = 1000
SATURATED_P99_MS = 10.0


def json_response(value: Any, status: int = 200) -> Response:
    return Response(dumps(value), status_code=status, media_type="application/json")


def error_response(
    status: int, message: str, kind: str = "BadRequestError", *, retry_after_s: int | None = None
) -> Response:
    """An error in the OpenAI / vLLM shape (with ``Retry-After`` when given)."""
    body = {"error": {"message": message, "type": kind, "param": None, "code": status}}
    response = json_response(body, status)
    if retry_after_s is not None:
        response.headers["retry-after"] = str(retry_after_s)
    return response


class InFlight:
    """Requests being answered now, and the most at once since the last reset."""

    def __init__(self) -> None:
        self.now = 0
        self.most = 0

    def enter(self) -> None:
        self.now += 1
        self.most = max(self.most, self.now)

    def leave(self) -> None:
        self.now -= 1

    def reset(self) -> None:
        self.most = self.now


class LoopLag:
    """The event loop's lag: how late each of a steady series of short sleeps woke up."""

    def __init__(self, interval_s: float = LAG_INTERVAL_S, window: int = LAG_WINDOW) -> None:
        self.interval_s = interval_s
        self.samples: deque[float] = deque(maxlen=window)

    async def run(self) -> None:
        """Sample forever (until cancelled)."""
        while True:
            start = time.perf_counter()
            await asyncio.sleep(self.interval_s)
            self.samples.append(max(0.0, time.perf_counter() - start - self.interval_s))

    def summary_ms(self) -> dict[str, float]:
        """``{"p50", "p99", "max"}`` of the recent samples, in milliseconds (zeros before any)."""
        ordered = sorted(self.samples)
        if not ordered:
            return {"p50": 0.0, "p99": 0.0, "max": 0.0}

        def at(q: float) -> float:
            return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000, 3)

        return {"p50": at(0.5), "p99": at(0.99), "max": round(ordered[-1] * 1000, 3)}

    def report(self) -> dict[str, Any]:
        """The ``loop_lag_ms`` and ``saturated`` entries of the stats."""
        lag = self.summary_ms()
        return {"loop_lag_ms": lag, "saturated": lag["p99"] > SATURATED_P99_MS}


def lifespan_with(lag: LoopLag) -> Callable[[Starlette], contextlib.AbstractAsyncContextManager[None]]:
    """A Starlette lifespan that runs ``lag``'s probe while the app is up."""

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        task = asyncio.create_task(lag.run())
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    return lifespan


def admin_routes(stats: Callable[[], Mapping[str, Any]], reset: Callable[[], None]) -> list[Route]:
    """``GET /health``, ``GET /standin/stats`` (``stats()`` as JSON), ``POST /standin/reset``."""

    async def health(request: Request) -> Response:
        return Response(b"", status_code=200)

    async def read_stats(request: Request) -> Response:
        return json_response(dict(stats()))

    async def do_reset(request: Request) -> Response:
        reset()
        return json_response(dict(stats()))

    return [
        Route("/health", health),
        Route("/standin/stats", read_stats),
        Route("/standin/reset", do_reset, methods=["POST"]),
    ]
