"""Load profiles and the loop that drives one.

- ``sync``: one request at a time;
- ``concurrency=N``: N requests in flight, each sent when one finishes (closed loop);
- ``rate=R``: requests sent at R per second whatever the answers (open loop), inter-arrival
  times drawn from a gamma distribution of shape ``burstiness`` (1: a Poisson process; below 1
  burstier, above 1 more regular; the mean stays 1/R), as vLLM's ``bench serve`` does.

A run sends ``warmup`` requests first (at the profile's concurrency, or one at a time for a rate),
excluded from the figures, then measures until ``requests`` requests were sent or ``duration_s``
passed, whichever comes first, and waits for the requests in flight.
"""

from __future__ import annotations

import asyncio
import math
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Literal

from mmsr_bench.load.records import RequestRecord

__all__ = ["Profile", "ProfileRun", "Send", "parse_profile", "run_profile"]

Send = Callable[[int, RequestRecord], Awaitable[RequestRecord]]
"""Sends request ``i`` of the order and fills the record."""


@dataclass(frozen=True)
class Profile:
    kind: Literal["sync", "concurrency", "rate"]
    value: float = 1.0
    burstiness: float = 1.0

    @property
    def label(self) -> str:
        if self.kind == "sync":
            return "sync"
        if self.kind == "concurrency":
            return f"concurrency={int(self.value)}"
        return f"rate={self.value:g}/s" + (
            f" (burstiness {self.burstiness:g})" if self.burstiness != 1 else ""
        )

    @property
    def concurrency(self) -> int | None:
        """The closed loop's width; None for an open-loop rate."""
        return None if self.kind == "rate" else (1 if self.kind == "sync" else int(self.value))


def parse_profile(text: str, burstiness: float = 1.0) -> Profile:
    """``sync``, ``concurrency=N`` (or ``c=N``, or a bare ``N``), ``rate=R`` (requests/s)."""
    name, _, value = text.strip().partition("=")
    try:
        if name == "sync" and not value:
            return Profile("sync")
        if name in ("concurrency", "c") or (not value and name.isdigit()):
            n = int(value or name)
            if n < 1:
                raise ValueError
            return Profile("concurrency", n)
        if name in ("rate", "r"):
            rate = float(value)
            if not (math.isfinite(rate) and rate > 0 and math.isfinite(burstiness) and burstiness > 0):
                raise ValueError
            return Profile("rate", rate, burstiness)
    except ValueError:
        pass
    raise ValueError(
        f"{text!r} is not a load profile: use sync, concurrency=N (N >= 1) or rate=R (R > 0 requests/s)"
    )


@dataclass
class ProfileRun:
    profile: Profile
    records: list[RequestRecord]
    """Warm-up requests first (``warmup=True``), then the measured ones, in the order sent."""
    wall_s: float
    """From the first measured request sent to the last one answered."""
    stopped_by: Literal["requests", "duration"]
    cpu_s: float = 0.0
    """CPU time of this process over the measured part (the load generator, and the client-side
    loop when it is the target)."""

    @property
    def measured(self) -> list[RequestRecord]:
        return [r for r in self.records if not r.warmup]


async def run_profile(
    profile: Profile,
    send: Send,
    order: Sequence[int],
    *,
    warmup: int = 0,
    requests: int,
    duration_s: float | None = None,
    seed: int = 0,
    on_done: Callable[[RequestRecord], None] = lambda record: None,
    after_warmup: Callable[[], Awaitable[None]] | None = None,
) -> ProfileRun:
    """Drive ``send`` with ``profile``: ``order[i]`` is the workload item of request ``i``
    (``len(order) >= warmup + requests``)."""
    if len(order) < warmup + requests:
        raise ValueError(f"the order holds {len(order)} requests, {warmup + requests} are needed")
    records: list[RequestRecord] = []

    async def one(i: int, start: float, warm: bool) -> None:
        record = RequestRecord(index=i, item=str(order[i]), start_s=time.perf_counter() - start, warmup=warm)
        records.append(record)
        try:
            await send(order[i], record)
        except Exception as exc:  # a failure of the sender itself is a failed request, not the end
            record.error = record.error or f"{type(exc).__name__}: {exc}"
        on_done(record)

    if warmup:
        t0 = time.perf_counter()
        await _closed_loop(lambda i: one(i, t0, True), range(warmup), profile.concurrency or 1, None, t0)
    if after_warmup is not None:
        await after_warmup()
    cpu = time.process_time()
    start = time.perf_counter()
    deadline = start + duration_s if duration_s is not None else None
    indices = range(warmup, warmup + requests)
    if profile.concurrency is not None:
        sent = await _closed_loop(
            lambda i: one(i, start, False), indices, profile.concurrency, deadline, start
        )
    else:
        sent = await _open_loop(
            lambda i: one(i, start, False), indices, profile.value, profile.burstiness, deadline, seed
        )
    wall = time.perf_counter() - start
    cpu = time.process_time() - cpu
    return ProfileRun(profile, records, wall, "requests" if sent == requests else "duration", cpu)


async def _closed_loop(
    one: Callable[[int], Awaitable[None]], indices: range, width: int, deadline: float | None, start: float
) -> int:
    pending = iter(indices)
    sent = 0

    async def worker() -> None:
        nonlocal sent
        for i in pending:
            if deadline is not None and time.perf_counter() >= deadline:
                return
            sent += 1
            await one(i)

    await asyncio.gather(*(worker() for _ in range(min(width, len(indices)))))
    return sent


async def _open_loop(
    one: Callable[[int], Awaitable[None]],
    indices: range,
    rate: float,
    burstiness: float,
    deadline: float | None,
    seed: int,
) -> int:
    rng = random.Random(seed)
    tasks: list[asyncio.Task[None]] = []
    next_at = time.perf_counter()
    for i in indices:
        now = time.perf_counter()
        if deadline is not None and next_at >= deadline:
            break
        if next_at > now:
            await asyncio.sleep(next_at - now)
        tasks.append(asyncio.ensure_future(one(i)))
        next_at += rng.gammavariate(burstiness, 1.0 / (rate * burstiness))
    await asyncio.gather(*tasks)
    return len(tasks)
