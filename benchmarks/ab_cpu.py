"""The gateway CPU per request of two checkouts, side by side: the A/B for one change.

    git worktree add /tmp/before HEAD~1
    python benchmarks/ab_cpu.py --before /tmp/before [--after .] [--mix image=1] [--mode auto] \
        [--stream] [--rounds 8] [--requests 150] [--concurrency 16]

Runs made one after the other on this shared machine drift by a third between runs (the
stand-in model's own CPU per call moves with them), which hides changes of a few percent. Here
both stand-in stacks (model, web, ``mmsr serve``; each checkout's own code, 0 ms stand-ins, the
local index) are up at once, and short bursts of ``--requests`` at ``--concurrency`` alternate
between them, ``--rounds`` times, in alternating order; so both see the same machine. It prints
each side's server CPU per request (user + system time of the ``mmsr serve`` process over the
burst, from /proc, per request), the medians, and the median of the per-round ratios. Two
checkouts of the same revision read 1.00-1.03 on this machine.

``--mix`` is the model stand-in's (``direct=1``: one protocol turn; ``image=1``: an image search
then the answer; ``image_text=1``: both searches); ``--mode off`` makes plain calls.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from gateway_cpu import _run

from mmsr_bench.load.stack import StandinOptions, standin_stack
from mmsr_bench.load.workload import load_workload
from mmsr_bench.world import WorldConfig, build_world


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--before", type=Path, required=True, help="a checkout of the revision before")
    parser.add_argument("--after", type=Path, default=Path(__file__).parent.parent)
    parser.add_argument("--mix", default="direct=1")
    parser.add_argument("--mode", default="auto", help="search_mode of the requests (off: plain calls)")
    parser.add_argument("--stream", action="store_true")
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--requests", type=int, default=150)
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()
    sides = {"before": args.before.resolve(), "after": args.after.resolve()}
    cpu: dict[str, list[float]] = {name: [] for name in sides}
    here, path = Path.cwd(), os.environ.get("PYTHONPATH")
    with tempfile.TemporaryDirectory() as tmp, contextlib.ExitStack() as stacks:
        world = Path(tmp) / "world"
        build_world(world, WorldConfig(seed=0, entities=8, fresh_entities=2, stream=0))
        items = load_workload(world / "questions" / "test-unknown.jsonl")
        options = StandinOptions(
            index=world / "corpus",
            model_latency="0",
            web_latency="0",
            mix=args.mix,
            serve_args=("--max-concurrent-requests", "512", "--log-level", "warning"),
        )
        running = {}
        try:
            for name, checkout in sides.items():
                # `python -m mmsr_serve.cli` imports from its working directory first
                os.chdir(checkout)
                os.environ["PYTHONPATH"] = str(checkout)
                running[name] = stacks.enter_context(standin_stack(options))
        finally:
            os.chdir(here)
            if path is None:
                os.environ.pop("PYTHONPATH", None)
            else:
                os.environ["PYTHONPATH"] = path
        for stack in running.values():  # warm-up: imports, connections, the index
            asyncio.run(_run(items, stack, args.concurrency, 100, args.mode, args.stream))
        for round_ in range(args.rounds):
            for name in list(sides) if round_ % 2 == 0 else list(sides)[::-1]:
                run = _run(items, running[name], args.concurrency, args.requests, args.mode, args.stream)
                cpu[name].append(asyncio.run(run)["cpu_ms_per_request"])
    for name, values in cpu.items():
        shown = " ".join(f"{v:.2f}" for v in values)
        print(f"{name:6s} {sides[name]}: median {statistics.median(values):.3f} ms per request ({shown})")
    ratios = [a / b for a, b in zip(cpu["after"], cpu["before"], strict=True)]
    print(f"after / before: median of the rounds' ratios {statistics.median(ratios):.3f}")


if __name__ == "__main__":
    main()
