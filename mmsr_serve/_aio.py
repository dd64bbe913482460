"""aiohttp sessions for objects that outlive an event loop.

An ``aiohttp.ClientSession`` belongs to the event loop it was made in, while a search provider or
a page fetcher is built once and may be used under several ``asyncio.run`` calls (training steps,
CLI commands, tests). :class:`LoopSession` makes one session per loop on first use there and
closes it when that loop ends: a suspended async generator holds it, and ``asyncio.run`` closes
every open async generator (``loop.shutdown_asyncgens()``) before it closes the loop. ``aclose()``
closes the current one sooner.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Callable

import aiohttp

__all__ = ["LoopSession"]


async def _closed_at_loop_end(session: aiohttp.ClientSession) -> AsyncGenerator[None, None]:
    try:
        yield
    finally:
        await session.close()


_Entry = tuple[aiohttp.ClientSession, AsyncGenerator[None, None]]


class LoopSession:
    """The session of the running event loop, made by ``factory`` (see the module docstring).

    Each loop has its own, kept until that loop ends: a loop never closes another's session
    (several loops can run at once, one per thread, as ``mmsr_train.rollout.run_sync`` does)."""

    def __init__(self, factory: Callable[[], aiohttp.ClientSession]) -> None:
        self._factory = factory
        self._by_loop: dict[
            asyncio.AbstractEventLoop, tuple[aiohttp.ClientSession, AsyncGenerator[None, None]]
        ]
        self._by_loop = {}

    async def get(self) -> aiohttp.ClientSession:
        loop = asyncio.get_running_loop()
        entry = self._by_loop.get(loop)
        if entry is None or entry[0].closed:
            for ended in [other for other in self._by_loop if other.is_closed()]:
                del self._by_loop[ended]  # closed with its loop; forget the loop too
            session = self._factory()
            holder = _closed_at_loop_end(session)
            await holder.__anext__()  # registered with this loop's async generators
            self._by_loop[loop] = entry = (session, holder)
        return entry[0]

    async def aclose(self) -> None:
        """Close the running loop's session (another running loop's closes when that loop ends)."""
        entry = self._by_loop.pop(asyncio.get_running_loop(), None)
        if entry is not None:
            await entry[1].aclose()
