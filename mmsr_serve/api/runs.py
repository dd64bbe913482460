"""Running the ``n`` agent runs of a request: merged events, a deadline, the concurrency slots and
cancellation when the client goes away.

Each run is pumped by its own task into one queue; whoever stops consuming the merged stream
(a finished response, an error, a disconnect, the deadline) cancels every task, and the
cancellation reaches the backend request and the run's wait for a search (a cached search call
shared with other requests runs on, by design).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Sequence
from contextlib import aclosing
from types import TracebackType
from typing import Any

import anyio
from starlette.types import Receive

from mmsr_serve.agent.events import Event, Finished, TurnStarted
from mmsr_serve.errors import ClientDisconnected, RequestTimeout, ShuttingDown

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
_DEADLINE = object()


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
    # One timer for the whole request, not one per wait (a streamed answer waits once a token):
    # at the deadline it puts _DEADLINE in the queue, which ends a wait for the next event.
    timer = loop.call_at(deadline, queue.put_nowait, _DEADLINE)
    try:
        running = len(streams)
        while running:
            if queue.empty():
                item = await queue.get()
            elif loop.time() < deadline:  # the next event is there
                item = queue.get_nowait()
            else:  # a backlog (a client reading slower than the model writes) times out too
                item = _DEADLINE
            if item is _DEADLINE:
                limit = timeout_s if deadline_s is None else deadline_s
                raise RequestTimeout(f"the request did not finish within {limit:g} s")
            if item is _END:
                running -= 1
            elif isinstance(item, Exception):
                raise item
            else:
                yield item
    finally:
        timer.cancel()
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


class DisconnectWatch:
    """Within ``async with DisconnectWatch(receive):``, a client that disconnects cancels the
    task inside, and the cancellation leaves the block as :class:`ClientDisconnected` (499).

    The work runs in the request's own task, as under :func:`asyncio.timeout` (which works the
    same way): one watching task per request, none per await. A cancellation from elsewhere (the
    server stopping) stays a cancellation.
    """

    def __init__(self, receive: Receive) -> None:
        self._receive = receive
        self._fired = False
        self._owner: asyncio.Task[Any] | None = None
        self._watch: asyncio.Task[None] | None = None
        self._cancelling = 0

    async def __aenter__(self) -> DisconnectWatch:
        self._owner = asyncio.current_task()
        cancelling = getattr(self._owner, "cancelling", None)  # Python 3.11+
        self._cancelling = cancelling() if cancelling is not None else 0
        self._watch = asyncio.ensure_future(self._wait())
        return self

    async def _wait(self) -> None:
        while (await self._receive())["type"] != "http.disconnect":
            pass
        if self._owner is not None:
            self._fired = True
            self._owner.cancel()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        assert self._watch is not None and self._owner is not None
        self._watch.cancel()
        self._owner, owner = None, self._owner  # a disconnect from now on cancels nothing
        if not self._fired:
            return
        # Fired: the cancellation was delivered at the work's next await (asyncio throws it on
        # resuming), so here it either leaves as the exception, or the work swallowed it.
        uncancel = getattr(owner, "uncancel", None)
        others = uncancel() > self._cancelling if uncancel is not None else False
        if exc_type is asyncio.CancelledError and not others:
            raise ClientDisconnected("the client disconnected") from None


async def settle(tasks: Sequence[asyncio.Future[Any]]) -> None:
    """Wait for cancelled tasks to finish their clean-up (closing the backend's connection, so
    the model server stops generating). Shielded: Starlette cancels through anyio cancel scopes,
    which cancel the waiting task again at every await, and a cancelled ``gather`` cancels its
    tasks again, which would cut their clean-up short."""
    pending = []
    for task in tasks:
        if not task.done():
            pending.append(task)
        elif not task.cancelled():
            task.exception()  # retrieved: no "exception was never retrieved" at collection
    if not pending:  # the usual end: nothing to wait for, no scope and no gather to build
        return
    gathered = asyncio.gather(*pending, return_exceptions=True)
    cancelled = False
    with anyio.CancelScope(shield=True):
        while not gathered.done():
            try:  # a plain task.cancel() (a client that left) goes past anyio's shield: not past this
                await asyncio.shield(gathered)
            except asyncio.CancelledError:
                cancelled = True
    if cancelled:  # the clean-up is done: now the cancellation goes on
        raise asyncio.CancelledError
