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


class LoopSession:
    """The session of the running event loop, made by ``factory`` (see the module docstring)."""

    def __init__(self, factory: Callable[[], aiohttp.ClientSession]) -> None:
        self._factory = factory
        self._session: aiohttp.ClientSession | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._holder: AsyncGenerator[None, None] | None = None

    async def get(self) -> aiohttp.ClientSession:
        loop = asyncio.get_running_loop()
        if self._session is None or self._session.closed or self._loop is not loop:
            session = self._factory()
            holder = _closed_at_loop_end(session)
            await holder.__anext__()  # registered with this loop's async generators
            self._session, self._loop, self._holder = session, loop, holder
        return self._session

    async def aclose(self) -> None:
        holder, self._holder, self._session = self._holder, None, None
        if holder is not None:
            await holder.aclose()
