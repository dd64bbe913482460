"""The request's disconnect watch and the merged runs' deadline, on their own (no server)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from mmsr_serve.agent.events import Event, TurnStarted
from mmsr_serve.api.runs import DisconnectWatch, merged, settle
from mmsr_serve.errors import ClientDisconnected, RequestTimeout


class Client:
    """An ASGI ``receive`` whose disconnect notice comes when the test says so."""

    def __init__(self) -> None:
        self.gone = asyncio.Event()
        self.waiting = 0

    async def receive(self) -> dict[str, object]:
        self.waiting += 1
        try:
            await self.gone.wait()
        finally:
            self.waiting -= 1
        return {"type": "http.disconnect"}


async def test_a_disconnect_cancels_the_work_and_says_so() -> None:
    client = Client()
    cleaned = asyncio.Event()

    async def work() -> None:
        try:
            await asyncio.sleep(30)
        finally:
            cleaned.set()

    async def request() -> None:
        async with DisconnectWatch(client.receive):
            await work()

    task = asyncio.ensure_future(request())
    await asyncio.sleep(0.01)
    client.gone.set()
    with pytest.raises(ClientDisconnected):
        await asyncio.wait_for(task, 2)
    assert cleaned.is_set()  # the work's own clean-up ran before the error left the block
    assert not task.cancelled()


async def test_work_that_ends_first_stops_the_watch() -> None:
    client = Client()
    async with DisconnectWatch(client.receive):
        await asyncio.sleep(0)
        assert client.waiting == 1
    await asyncio.sleep(0)  # the watch's cancellation is delivered
    assert client.waiting == 0
    client.gone.set()  # too late to matter
    await asyncio.sleep(0.01)  # nothing is cancelled: this await finishes


async def test_work_that_swallows_the_cancellation_keeps_its_result() -> None:
    """Work that absorbs a cancellation (a shielded clean-up, say) ends normally; nothing after
    the block is cancelled."""
    client = Client()

    async def request() -> str:
        async with DisconnectWatch(client.receive):
            try:
                await asyncio.sleep(0)  # the watch is waiting on receive
                client.gone.set()
                await asyncio.sleep(30)
            except asyncio.CancelledError:
                pass
        await asyncio.sleep(0.01)  # raises if a cancellation were still pending
        return "finished"

    assert await asyncio.wait_for(request(), 2) == "finished"


async def test_a_cancellation_from_elsewhere_stays_a_cancellation() -> None:
    client = Client()
    started = asyncio.Event()

    async def request() -> None:
        async with DisconnectWatch(client.receive):
            started.set()
            await asyncio.sleep(30)

    task = asyncio.ensure_future(request())
    await started.wait()
    task.cancel()  # the server stopping, say
    with pytest.raises(asyncio.CancelledError):
        await task


async def _events(delays: list[float]) -> AsyncIterator[Event]:
    for delay in delays:
        await asyncio.sleep(delay)
        yield TurnStarted(turn=1)


async def test_merged_runs_keep_their_order_and_their_deadline() -> None:
    got = [item async for item in merged([_events([0, 0, 0]), _events([0.01])], timeout_s=2)]
    assert sorted(i for i, _ in got) == [0, 0, 0, 1]
    with pytest.raises(RequestTimeout, match="within 7 s"):
        async for _ in merged([_events([0, 5])], timeout_s=0.05, deadline_s=7):
            pass


async def test_settle_waits_for_what_is_still_cleaning_up() -> None:
    cleaned = asyncio.Event()

    async def slow_clean_up() -> None:
        try:
            await asyncio.sleep(30)
        finally:
            await asyncio.sleep(0.01)  # closing a connection, say
            cleaned.set()

    async def failed() -> None:
        raise ValueError("lost")

    done, busy = asyncio.ensure_future(failed()), asyncio.ensure_future(slow_clean_up())
    await asyncio.sleep(0)
    assert done.done()
    busy.cancel()
    await settle([done, busy])
    assert cleaned.is_set()
    await settle([done, busy])  # all done now: returns at once


async def test_a_backlog_does_not_outrun_the_deadline() -> None:
    """A client reading slower than the model writes keeps the queue full: the deadline holds."""

    async def fast() -> AsyncIterator[Event]:
        for _ in range(10_000):
            await asyncio.sleep(0.001)
            yield TurnStarted(turn=1)

    started = asyncio.get_running_loop().time()
    with pytest.raises(RequestTimeout):
        async for _ in merged([fast()], timeout_s=0.1):
            await asyncio.sleep(0.005)  # the slow reader
    assert asyncio.get_running_loop().time() - started < 1.0


async def test_a_cancellation_during_settle_waits_for_the_clean_up() -> None:
    """A plain task.cancel() (the disconnect watch's) goes past anyio's shield; settle still lets
    the runs finish closing, then the cancellation goes on."""
    cleaned = asyncio.Event()
    settling = asyncio.Event()

    async def run() -> None:
        try:
            await asyncio.sleep(30)
        finally:
            settling.set()
            await asyncio.sleep(0.05)  # closing the backend's connection, say
            cleaned.set()

    busy = asyncio.ensure_future(run())
    await asyncio.sleep(0)
    busy.cancel()
    waiting = asyncio.ensure_future(settle([busy]))
    await settling.wait()
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    assert cleaned.is_set()
