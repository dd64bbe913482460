"""mmsr serve against the search loop written client-side, on stand-ins: the figures of
benchmarks/gateway_load.md.

    python benchmarks/gateway_load.py [--repeats 3] [--concurrency 1 16 64 256] [--out DIR]

For each model turn latency (0 ms and 50 ms) it starts the stand-in deployment of
``mmsr bench run --standins`` (a vLLM-shaped model server playing the protocol, a SearXNG-shaped
web provider answering in 100 ms, an ``mmsr serve`` in front of them using the local index for
image search and the web stand-in for text search, each in its own process), then runs every
concurrency against ``mmsr serve`` and against the client-side loop (openai-python against the
model stand-in, the same tools), ``--repeats`` times, interleaved. It reports the medians over
the repeats of each side's p50, p99 and throughput and of the per-repeat ratios mmsr / loop,
with the machine's load, and writes OUT/gateway_load.md, OUT/gateway_load.json and
OUT/gateway_load.png.

The workload is the test-unknown split of a small generated world (every question about an
entity the model does not know, so the stand-in's trajectory mix decides the searches: answer
directly, image search then answer, image search then text search then answer).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from mmsr_bench.load.bench import RunOptions, bench_deployment
from mmsr_bench.load.profiles import Profile
from mmsr_bench.load.report import Row, plot_rows
from mmsr_bench.load.stack import StandinOptions, standin_stack
from mmsr_bench.load.workload import load_workload
from mmsr_bench.world import WorldConfig, build_world
from mmsr_serve.config import AgentConfig


def _requests_for(concurrency: int, scale: float) -> int:
    return max(16, int(2 * concurrency * scale))


async def _one_repeat(
    world: Path, stack: Any, concurrencies: list[int], scale: float, seed: int
) -> list[Row]:
    items = load_workload(world / "questions" / "test-unknown.jsonl")
    env = {**os.environ, "SEARXNG_BASE_URL": stack.web_url}
    agent = AgentConfig.load(
        None, env=env, **stack.agent_settings(), index=world / "corpus", search_cache="off"
    )
    rows: list[Row] = []
    for concurrency in concurrencies:
        options = RunOptions(
            profiles=[Profile("concurrency", concurrency)],
            requests=_requests_for(concurrency, scale),
            warmup=min(concurrency, 8),
            seed=seed,
        )
        rows += await bench_deployment(
            items,
            stack.server_url,
            options,
            baseline_agent=agent,
            baseline_url=stack.model_url,
            standin_urls={"model": stack.model_url.removesuffix("/v1"), "web": stack.web_url},
        )
    return rows


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def _table(results: dict[str, list[list[Row]]], concurrencies: list[int]) -> tuple[str, list[dict[str, Any]]]:
    lines = [
        "| model turn | concurrency | mmsr p50 ms | loop p50 ms | p50 ratio | mmsr p99 ms | loop p99 ms "
        "| p99 ratio | mmsr req/s | loop req/s | throughput ratio | searches/req | failed mmsr/loop |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    figures = []
    for latency, repeats in results.items():
        for c in concurrencies:
            pairs = []
            for rows in repeats:
                mine = {r.target: r.summary for r in rows if r.run.profile.value == c}
                pairs.append((mine["mmsr"], mine["client-loop"]))

            def med(side: int, key: str, q: str | None = None, pairs: list[Any] = pairs) -> float:
                return _median([(p[side][key][q] if q else p[side][key]) for p in pairs])

            def ratio(key: str, q: str | None = None, pairs: list[Any] = pairs) -> float:
                return _median(
                    [(p[0][key][q] / p[1][key][q]) if q else (p[0][key] / p[1][key]) for p in pairs]
                )

            row = {
                "model_turn": latency,
                "concurrency": c,
                "mmsr_p50_ms": 1000 * med(0, "latency_s", "p50"),
                "loop_p50_ms": 1000 * med(1, "latency_s", "p50"),
                "p50_ratio": ratio("latency_s", "p50"),
                "mmsr_p99_ms": 1000 * med(0, "latency_s", "p99"),
                "loop_p99_ms": 1000 * med(1, "latency_s", "p99"),
                "p99_ratio": ratio("latency_s", "p99"),
                "mmsr_rps": med(0, "throughput_rps"),
                "loop_rps": med(1, "throughput_rps"),
                "throughput_ratio": ratio("throughput_rps"),
                "searches_per_request": med(0, "searches_per_request", "total"),
                "failed_mmsr": sum(p[0]["failed"] for p in pairs),
                "failed_loop": sum(p[1]["failed"] for p in pairs),
                "errors": [p[i]["errors"] for p in pairs for i in (0, 1) if p[i]["errors"]],
            }
            figures.append(row)
            lines.append(
                f"| {latency} | {c} | {row['mmsr_p50_ms']:.0f} | {row['loop_p50_ms']:.0f} | "
                f"{row['p50_ratio']:.2f}x | {row['mmsr_p99_ms']:.0f} | {row['loop_p99_ms']:.0f} | "
                f"{row['p99_ratio']:.2f}x | {row['mmsr_rps']:.1f} | {row['loop_rps']:.1f} | "
                f"{row['throughput_ratio']:.2f}x | {row['searches_per_request']:.2f} | "
                f"{row['failed_mmsr']}/{row['failed_loop']} |"
            )
    return "\n".join(lines), figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 16, 64, 256])
    parser.add_argument("--model-latency", nargs="+", default=["0", "50ms"])
    parser.add_argument("--web-latency", default="100ms")
    parser.add_argument("--scale", type=float, default=1.0, help="requests per run: 2 x concurrency x scale")
    parser.add_argument("--world", type=Path, help="an existing world folder (default: build a small one)")
    parser.add_argument("--workers", type=int, default=1, help="mmsr serve --workers")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args()

    started = time.time()
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        world = args.world
        if world is None:
            world = Path(tmp) / "world"
            build_world(world, WorldConfig(seed=0, entities=40, stream=0))
        results: dict[str, list[list[Row]]] = {}
        for latency in args.model_latency:
            options = StandinOptions(
                index=world / "corpus",
                model_latency=latency,
                web_latency=args.web_latency,
                # admit the whole load: the default (64) answers 429 beyond it, which is not the
                # loop's cost being measured
                serve_args=(
                    "--max-concurrent-requests",
                    str(max(args.concurrency) + 16),
                    "--workers",
                    str(args.workers),
                ),
            )
            with standin_stack(options) as stack:
                results[latency] = []
                for repeat in range(args.repeats):
                    print(
                        f"model turn {latency}: repeat {repeat + 1}/{args.repeats}",
                        file=sys.stderr,
                        flush=True,
                    )
                    rows = asyncio.run(_one_repeat(world, stack, args.concurrency, args.scale, seed=repeat))
                    results[latency].append(rows)
    table, figures = _table(results, args.concurrency)
    command = "python benchmarks/gateway_load.py " + " ".join(sys.argv[1:])
    load_after = os.getloadavg()
    saturated = sorted(
        {
            f"{name} at model turn {lat}, concurrency {int(r.run.profile.value)}"
            for lat, repeats in results.items()
            for rows in repeats
            for r in rows
            for name, seen in r.standins.items()
            if seen.get("saturated")
        }
    )
    bench_cpu = max(
        r.summary["bench_cpu_share"] for repeats in results.values() for rows in repeats for r in rows
    )
    args.out.mkdir(parents=True, exist_ok=True)
    text = [
        "# mmsr serve against the client-side loop (stand-ins, one machine)",
        "",
        "```",
        command,
        "```",
        "",
        f"{os.cpu_count()} CPUs; load average {load_before[0]:.2f} before, {load_after[0]:.2f} after; "
        f"{args.repeats} repeats (medians; ratios are mmsr / loop within one repeat, then the median); "
        f"web search {args.web_latency}; {(time.time() - started) / 60:.0f} min in all. "
        f"Loading mmsr serve, the bench process used at most {bench_cpu:.0%} of a core.",
        "",
        table,
        "",
        "Stand-ins saturated: " + ("; ".join(saturated) if saturated else "never") + ".",
        "",
    ]
    (args.out / "gateway_load.md").write_text("\n".join(text), encoding="utf-8")
    (args.out / "gateway_load.json").write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")
    last = {lat: repeats[-1] for lat, repeats in results.items()}
    plot_rows(
        [Row(f"{r.target} ({lat})", r.run, r.summary) for lat, rows in last.items() for r in rows],
        args.out / "gateway_load.png",
        title="mmsr serve vs the client-side loop (last repeat)",
    )
    print("\n".join(text))


if __name__ == "__main__":
    main()
