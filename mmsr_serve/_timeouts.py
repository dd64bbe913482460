"""Deadlines as context managers: ``asyncio.timeout`` where Python has it (3.11+), else
``async_timeout`` (aiohttp's dependency on 3.10). Unlike ``asyncio.wait_for`` on 3.11, they start
no task per await: the hot path of a request awaits under them at every event."""

from __future__ import annotations

import sys

if sys.version_info >= (3, 11):
    from asyncio import timeout, timeout_at
else:
    from async_timeout import timeout, timeout_at

__all__ = ["timeout", "timeout_at"]
