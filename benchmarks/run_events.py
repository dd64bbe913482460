"""The CPU of taking one event from a request's runs (``mmsr_serve.api.runs.merged``), per event.

    python benchmarks/run_events.py [--checkout /tmp/before] [--events 100] [--runs 200]

Every event of a request (a streamed token's delta, a search started, the end) passes through
``merged``, the queue that joins the request's ``n`` runs under its deadline. Here one run yields
``--events`` events, each on its own turn of the event loop (as tokens read from the model one at
a time arrive), on uvloop as under ``mmsr serve``; the figure is this process's CPU over
``--runs`` such requests per event, the generator's own ``sleep(0)`` included, in 7 rounds after
a warm-up, and their median. ``--checkout`` imports ``mmsr_serve`` from another checkout: run it
for both revisions, alternating, to compare two.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkout", type=Path, default=Path(__file__).parent.parent)
    parser.add_argument("--events", type=int, default=100)
    parser.add_argument("--runs", type=int, default=200)
    args = parser.parse_args()
    sys.path.insert(0, str(args.checkout.resolve()))
    import uvloop

    from mmsr_serve.agent.events import Event, TurnStarted
    from mmsr_serve.api.runs import merged

    event = TurnStarted(turn=1)

    async def run() -> AsyncIterator[Event]:
        for _ in range(args.events):
            await asyncio.sleep(0)
            yield event

    async def request() -> None:
        async for _ in merged([run()], timeout_s=60):
            pass

    async def rounds() -> list[float]:
        for _ in range(50):
            await request()
        out = []
        for _ in range(7):
            start = time.process_time()
            for _ in range(args.runs):
                await request()
            out.append(1e6 * (time.process_time() - start) / (args.runs * args.events))
        return out

    us = uvloop.run(rounds())
    shown = " ".join(f"{u:.2f}" for u in us)
    print(f"{args.checkout}: {statistics.median(us):.2f} us CPU per event (rounds: {shown})")


if __name__ == "__main__":
    main()
