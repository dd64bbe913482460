"""A bounded soak of ``mmsr serve`` under random model-server and search-provider faults.

    python benchmarks/soak.py [--requests 10000] [--concurrency 32] [--rounds 10]

The stand-ins of ``mmsr bench run --standins`` (50 ms model turns, 20 ms searches, the local
index for image search) with fault modes on (mmsr_bench/standins/faults.py; ``--model-faults`` and
``--web-faults`` change them), one ``mmsr serve`` with ``--request-timeout 10``. ``--requests``
mixed requests (direct / image search / image then text search) go in ``--rounds`` rounds at
``--concurrency``, the fourth and eighth rounds streamed. After each round: the server's RSS, open file
descriptors and threads. Over the run: the status distribution, requests lost (no HTTP answer),
requests hung (past the request deadline + 2 s), 5xx by cause, p50/p99 latency.

A fault of the model server may fail its request (502, 504, 429); one of the search provider
must not (a failed search the model is told about). Nothing may be lost or hung, and memory,
descriptors and threads must level off. Writes OUT/soak.md and OUT/soak.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any

from mmsr_bench.load.bench import RunOptions, bench_deployment
from mmsr_bench.load.profiles import Profile
from mmsr_bench.load.records import RequestRecord
from mmsr_bench.load.stack import StandinOptions, standin_stack
from mmsr_bench.load.workload import load_workload
from mmsr_bench.world import WorldConfig, build_world

MODEL_FAULTS = "5xx=0.01,429=0.005,echo=0.005,malformed=0.01,cut=0.005,reset=0.005,drip=0.01,hang=0.002"
WEB_FAULTS = "5xx=0.02,429=0.01,malformed=0.01,reset=0.01,drip=0.01,hang=0.005"
REQUEST_TIMEOUT_S = 10.0


def _proc(pid: int) -> dict[str, float]:
    status = Path(f"/proc/{pid}/status").read_text().splitlines()
    fields = dict(line.split(":", 1) for line in status if ":" in line)
    return {
        "rss_mb": int(fields["VmRSS"].split()[0]) / 1024,
        "threads": int(fields["Threads"]),
        "fds": len(os.listdir(f"/proc/{pid}/fd")),
    }


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


async def _round(
    items: list[Any], url: str, model: str, concurrency: int, requests: int, stream: bool
) -> list[RequestRecord]:
    options = RunOptions(
        profiles=[Profile("concurrency", concurrency)],
        requests=requests,
        warmup=0,
        stream=stream,
        timeout_s=REQUEST_TIMEOUT_S + 20,
    )
    rows = await bench_deployment(items, url, options, model=model)
    return list(rows[0].run.records)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=10000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--model-faults", default=MODEL_FAULTS)
    parser.add_argument("--web-faults", default=WEB_FAULTS)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args()
    load_before = os.getloadavg()
    records: list[RequestRecord] = []
    points: list[dict[str, float]] = []
    started = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp:
        world = Path(tmp) / "world"
        build_world(world, WorldConfig(seed=0, entities=8, fresh_entities=2, stream=0))
        items = load_workload(world / "questions" / "test-unknown.jsonl")
        standins = StandinOptions(
            index=world / "corpus",
            model_latency="50ms",
            web_latency="20ms",
            model_faults=args.model_faults,
            web_faults=args.web_faults,
            hang_s=60.0,
            serve_args=("--request-timeout", str(REQUEST_TIMEOUT_S), "--log-level", "error"),
        )
        with standin_stack(standins) as stack:
            server = stack.pids["server"]
            points.append({"done": 0, **_proc(server)})
            per_round = max(1, args.requests // args.rounds)
            for index in range(args.rounds):
                stream = index % 4 == 3
                records += asyncio.run(
                    _round(items, stack.server_url, stack.model_name, args.concurrency, per_round, stream)
                )
                points.append({"done": len(records), **_proc(server)})
                print(points[-1], file=sys.stderr, flush=True)
            with urllib.request.urlopen(stack.server_url + "/health", timeout=5) as health:
                alive = health.status == 200
    minutes = (time.monotonic() - started) / 60
    statuses = Counter(str(r.status) for r in records)
    lost = [r for r in records if r.status == 0]
    hung = [r for r in records if r.latency_s > REQUEST_TIMEOUT_S + 2]
    errors = Counter(f"{r.status} {(r.error or '')[:90]}" for r in records if not r.ok)
    latencies = [r.latency_s for r in records]
    figures = {
        "requests": len(records),
        "concurrency": args.concurrency,
        "minutes": minutes,
        "statuses": dict(statuses),
        "lost": len(lost),
        "hung": len(hung),
        "errors": dict(errors.most_common(15)),
        "p50_s": _percentile(latencies, 0.5),
        "p99_s": _percentile(latencies, 0.99),
        "points": points,
        "healthy_after": alive,
        "model_faults": args.model_faults,
        "web_faults": args.web_faults,
    }
    lines = [
        "# Soak under faults",
        "",
        "```",
        "python benchmarks/soak.py " + " ".join(sys.argv[1:]),
        "```",
        "",
        f"{os.cpu_count()} CPUs; load average {load_before[0]:.2f} before, {os.getloadavg()[0]:.2f} after; "
        f"{len(records)} mixed requests (rounds 4 and 8 streamed) at concurrency {args.concurrency} in "
        f"{minutes:.1f} min; request timeout {REQUEST_TIMEOUT_S:g} s; 50 ms model turns, 20 ms searches.",
        f"Model stand-in faults: `{args.model_faults}`; web stand-in faults: `{args.web_faults}`.",
        "",
        f"- statuses: {', '.join(f'{k}: {v}' for k, v in sorted(statuses.items()))}",
        f"- lost (no HTTP answer): {len(lost)}; hung past the deadline + 2 s: {len(hung)}",
        f"- the server answered /health after the run: {'yes' if alive else 'NO'}",
        f"- latency p50 {figures['p50_s']:.3f} s, p99 {figures['p99_s']:.3f} s",
        "- failures by status and message:",
        *(f"  - {n} x `{key}`" for key, n in errors.most_common(15)),
        "",
        "| requests done | RSS MB | open fds | threads |",
        "|---:|---:|---:|---:|",
        *(f"| {p['done']:.0f} | {p['rss_mb']:.0f} | {p['fds']:.0f} | {p['threads']:.0f} |" for p in points),
    ]
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "soak.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (args.out / "soak.json").write_text(json.dumps(figures, indent=1) + "\n", encoding="utf-8")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
