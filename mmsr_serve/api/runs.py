"""Running the ``n`` agent runs of a request: merged events, a deadline, the concurrency slots and
cancellation when the client goes away.

Each run is pumped by its own task into one queue; whoever stops consuming the merged stream
(a finished response, an error, a disconnect, the deadline) cancels every task, and the
cancellation reaches the backend request and the run's wait for a search (a cached search call
shared with other requests runs on, by design).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Sequence
from contextlib import aclosing
from typing import Any, TypeVar

import anyio
from starlette.requests import Request

from mmsr_serve.agent.events import Event, Finished, TurnStarted
from mmsr_serve.errors import ClientDisconnected, RequestTimeout, ShuttingDown

T = TypeVar("T")
Indexed = tuple[int, Event]
Events = AsyncGenerator[Indexed, None]


class Slots:
    """A non-blocking concurrency limit: a full server answers 429 at once instead of queueing."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0

    def try_acquire(self) -> bool:
        if self.used >= self.limit:
            return False
        self.used += 1
        return True

    def release(self) -> None:
        self.used = max(0, self.used - 1)


_END = object()


async def merged(
    streams: Sequence[AsyncIterator[Event]],
    *,
    timeout_s: float,
    on_event: Callable[[Event], None] = lambda event: None,
    deadline_s: float | None = None,
    shutdown: anyio.Event | None = None,
    drain_s: float = 0.0,
) -> Events:
    """Events of all runs as ``(choice index, event)``, in arrival order, within ``timeout_s``
    (what is left of the request's ``deadline_s``, which the timeout's message names).

    When ``shutdown`` is set (the server is stopping), the runs have ``drain_s`` more seconds to
    finish; then :class:`ShuttingDown` (503) ends the stream (an error event and ``[DONE]``).
    """
    queue: asyncio.Queue[Any] = asyncio.Queue()

    async def pump(index: int, stream: AsyncIterator[Event]) -> None:
        try:
            async for event in stream:
                on_event(event)
                queue.put_nowait((index, event))
            queue.put_nowait(_END)
        except Exception as exc:
            queue.put_nowait(exc)
        finally:
            aclose = getattr(stream, "aclose", None)
            if aclose is not None:
                await aclose()

    tasks = [asyncio.create_task(pump(i, s)) for i, s in enumerate(streams)]
    if shutdown is not None:

        async def drain() -> None:
            await shutdown.wait()
            await asyncio.sleep(drain_s)
            queue.put_nowait(ShuttingDown("the server is shutting down; the request did not finish in time"))

        tasks.append(asyncio.create_task(drain()))
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    try:
        running = len(streams)
        while running:
            try:
                item = await asyncio.wait_for(queue.get(), max(0.0, deadline - loop.time()))
            except asyncio.TimeoutError:
                limit = timeout_s if deadline_s is None else deadline_s
                raise RequestTimeout(f"the request did not finish within {limit:g} s") from None
            if item is _END:
                running -= 1
            elif isinstance(item, Exception):
                raise item
            else:
                yield item
    finally:
        for task in tasks:
            task.cancel()
        await settle(tasks)


async def collect(events: Events, n: int) -> list[Any]:
    """The ``AgentResult`` of each run, in choice order."""
    results: list[Any] = [None] * n
    async with aclosing(events):
        async for index, event in events:
            if isinstance(event, Finished):
                results[index] = event.result
    return results


async def prefetch(events: Events) -> list[Indexed]:
    """Events up to the first output of the model (or a search, or the end): a backend that fails
    before producing anything then fails the request with its HTTP status, not inside a 200 stream."""
    buffered: list[Indexed] = []
    async for item in events:
        buffered.append(item)
        if not isinstance(item[1], TurnStarted):
            break
    return buffered


async def replay(buffered: list[Indexed], events: Events) -> Events:
    async with aclosing(events):
        for item in buffered:
            yield item
        async for item in events:
            yield item


async def _disconnected(request: Request) -> None:
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return


async def cancel_on_disconnect(request: Request, work: Awaitable[T]) -> T:
    """Await ``work``, cancelling it (and raising :class:`ClientDisconnected`) if the client leaves."""
    job = asyncio.ensure_future(work)
    watch = asyncio.ensure_future(_disconnected(request))
    try:
        await asyncio.wait({job, watch}, return_when=asyncio.FIRST_COMPLETED)
        if job.done():
            return job.result()
        raise ClientDisconnected("the client disconnected")
    finally:
        for task in (job, watch):
            task.cancel()
        await settle([job, watch])


async def settle(tasks: Sequence[asyncio.Future[Any]]) -> None:
    """Wait for cancelled tasks to finish their clean-up (closing the backend's connection, so
    the model server stops generating). Shielded: Starlette cancels through anyio cancel scopes,
    which cancel the waiting task again at every await, and a cancelled ``gather`` cancels its
    tasks again, which would cut their clean-up short."""
    with anyio.CancelScope(shield=True):
        await asyncio.gather(*tasks, return_exceptions=True)
