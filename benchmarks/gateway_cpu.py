"""The gateway's CPU per plain call, per model turn and per request, and its memory under load.

    python benchmarks/gateway_cpu.py [--requests 600] [--concurrency 16] [--soak 10000]

On the stand-ins of ``mmsr bench run --standins`` (0 ms model turns, 0 ms web search, the local
index for image search), one ``mmsr serve`` process is loaded at ``--concurrency`` with:

- ``plain``: ``search_mode: off``, one plain model call (no protocol, no search);
- ``protocol turn``: the model answers at once (mix ``direct``): one protocol turn, no search;
- ``protocol turn, streamed``: the same with ``stream: true`` (server-sent events to the client);
- ``image search``: the model searches the image, then answers (two turns, one local image search);
- ``mixed``: direct / image / image then text, as benchmarks/gateway_load.py.

For each it reports the server process's CPU time (user + system, from /proc) per request and per
model turn, and the model stand-in's own CPU per call for scale. Then, at concurrency 256, the
server's resident memory at rest and its peak during the run (the difference per request in
flight), and with ``--soak N`` the RSS after every tenth of N mixed requests (flat = no leak).
The search tools' own CPU per search is measured in this process, as the server runs them: the
local image search on the workload's images, and the text search (the SearXNG call to the web
stand-in, the page reads and their extraction, the summaries) on the stand-in model's queries,
against the mixed row's stand-ins. So the per-turn figure the issue's target names (the search
tool's work excluded) can be given.
Writes OUT/gateway_cpu.md and OUT/gateway_cpu.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from mmsr_bench.load.bench import RunOptions, bench_deployment
from mmsr_bench.load.profiles import Profile
from mmsr_bench.load.stack import StandinOptions, standin_stack
from mmsr_bench.load.workload import load_workload
from mmsr_bench.world import WorldConfig, build_world

MIXES = {  # name: (the model stand-in's mix, search_mode, streamed)
    "plain": ("direct=1", "off", False),
    "protocol turn": ("direct=1", "auto", False),
    "protocol turn, streamed": ("direct=1", "auto", True),
    "image search": ("image=1", "auto", False),
    "mixed": ("direct=1,image=1,image_text=1", "auto", False),
}


def _cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return sum(int(fields[i]) for i in (11, 12)) / os.sysconf("SC_CLK_TCK")


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def _run(
    items: list[Any], stack: Any, concurrency: int, requests: int, mode: str, stream: bool = False
) -> dict[str, Any]:
    options = RunOptions(
        profiles=[Profile("concurrency", concurrency)],
        requests=requests,
        warmup=0,
        search_mode=mode,
        stream=stream,
    )
    server, model = stack.pids["server"], stack.pids["model"]
    before, model_before = _cpu_s(server), _cpu_s(model)
    rows = await bench_deployment(items, stack.server_url, options, model=stack.model_name)
    after, model_after = _cpu_s(server), _cpu_s(model)
    s = rows[0].summary
    turns = s["turns_per_request"] * s["ok"]
    return {
        "requests": s["ok"],
        "failed": s["failed"],
        "turns_per_request": s["turns_per_request"],
        "searches_per_request": s["searches_per_request"]["total"],
        "image_searches_per_request": s["searches_per_request"].get("image", 0.0),
        "cpu_ms_per_request": 1000 * (after - before) / max(1, s["ok"]),
        "cpu_ms_per_turn": 1000 * (after - before) / max(1.0, turns),
        "model_cpu_ms_per_call": 1000 * (model_after - model_before) / max(1.0, turns),
        "p50_ms": 1000 * s["latency_s"]["p50"],
        "rps": s["throughput_rps"],
    }


def _image_search_cpu_ms(corpus: Path, items: list[Any], concurrency: int, searches: int = 400) -> float:
    """The local image search's own CPU per search, run here on the workload's images as the
    server runs them (each query decoded as an upload, ``search_image`` at k=5, ``concurrency``
    at a time on the default thread pool): this process's CPU over ``searches`` / ``searches``."""
    from mmsr_serve.images import decode_image
    from mmsr_serve.search.local import LocalIndex

    with tempfile.TemporaryDirectory() as tmp:
        index = LocalIndex(corpus, Path(tmp) / "index.sqlite")
        index.ensure_index()
        images = [decode_image(Path(i.image).read_bytes()) for i in items if isinstance(i.image, str)]

        async def search(n: int) -> object:
            return await index.search_image(images[n % len(images)], 5)

        try:  # the first search warms: imports, the signature table
            return asyncio.run(_cpu_ms_per_call(search, searches, concurrency))
        finally:
            index.close()


def _text_search_cpu_ms(
    stack: Any, corpus: Path, items: list[Any], concurrency: int, searches: int = 120
) -> float:
    """The text search's own CPU per search, run here with the tools the server builds from the
    same settings (as the client-side loop of ``mmsr bench`` does), on the queries the model
    stand-in writes for the workload's questions, ``concurrency`` at a time: this process's CPU
    over ``searches`` / ``searches``. The search cache is off, as for the server."""
    from mmsr_bench.standins.play import _query
    from mmsr_serve.config import AgentConfig

    env = {**os.environ, "SEARXNG_BASE_URL": stack.web_url}
    env.pop("MMSR_CONFIG", None)  # as for the server (mmsr_bench/load/stack.py)
    agent = AgentConfig.load(None, env=env, **stack.agent_settings(), index=corpus, search_cache="off")
    queries = [_query(i.question) for i in items]
    top_k = agent.limits().top_k

    async def measure() -> float:
        tools = agent.build_search()
        text = tools.text
        assert text is not None
        try:
            tools.warm()

            async def search(n: int) -> object:  # the first warms: imports, connections
                return await text.search_text(queries[n % len(queries)], top_k)

            return await _cpu_ms_per_call(search, searches, concurrency)
        finally:
            await tools.aclose()

    return asyncio.run(measure())


async def _cpu_ms_per_call(call: Callable[[int], Awaitable[object]], calls: int, concurrency: int) -> float:
    """This process's CPU ms per call of ``call(n)`` for n in range(calls), ``concurrency`` at a
    time, after one call to warm up."""
    await call(0)
    gate = asyncio.Semaphore(concurrency)

    async def one(n: int) -> None:
        async with gate:
            await call(n)

    before = time.process_time()
    await asyncio.gather(*(one(n) for n in range(calls)))
    return 1000 * (time.process_time() - before) / calls


def _watch_rss(pid: int, stop: threading.Event, peak: list[float]) -> None:
    while not stop.wait(0.05):
        peak[0] = max(peak[0], _rss_mb(pid))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=600)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--soak", type=int, default=0, help="mixed requests of the memory soak (0: none)")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args()
    load_before = os.getloadavg()
    figures: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        world = Path(tmp) / "world"
        build_world(world, WorldConfig(seed=0, entities=8, fresh_entities=2, stream=0))
        items = load_workload(world / "questions" / "test-unknown.jsonl")
        figures["image_search_cpu_ms"] = _image_search_cpu_ms(world / "corpus", items, args.concurrency)
        for name, (mix, mode, stream) in MIXES.items():
            standins = StandinOptions(
                index=world / "corpus",
                model_latency="0",
                web_latency="0",
                mix=mix,
                serve_args=("--max-concurrent-requests", "512", "--log-level", "warning"),
            )
            with standin_stack(standins) as stack:
                asyncio.run(_run(items, stack, args.concurrency, 100, mode, stream))  # warm-up
                run = _run(items, stack, args.concurrency, args.requests, mode, stream)
                figures[name] = asyncio.run(run)
                print(name, figures[name], file=sys.stderr, flush=True)
                if name != "mixed":
                    continue
                figures["text_search_cpu_ms"] = _text_search_cpu_ms(
                    stack, world / "corpus", items, args.concurrency
                )
                server = stack.pids["server"]
                rest = _rss_mb(server)
                stop, peak = threading.Event(), [rest]
                watcher = threading.Thread(target=_watch_rss, args=(server, stop, peak), daemon=True)
                watcher.start()
                asyncio.run(_run(items, stack, 256, 1024, mode))
                stop.set()
                watcher.join()
                figures["memory"] = {
                    "rss_rest_mb": rest,
                    "rss_peak_mb": peak[0],
                    "mb_per_request_in_flight": (peak[0] - rest) / 256,
                }
                soak: list[tuple[int, float]] = []
                started = time.monotonic()
                for done in (
                    range(args.soak // 10, args.soak + 1, max(1, args.soak // 10)) if args.soak else ()
                ):
                    asyncio.run(_run(items, stack, 64, args.soak // 10, mode))
                    soak.append((done, _rss_mb(server)))
                figures["soak"] = {"points": soak, "minutes": (time.monotonic() - started) / 60}
    lines = [
        "# Gateway CPU per call, per turn and per request; memory",
        "",
        "```",
        "python benchmarks/gateway_cpu.py " + " ".join(sys.argv[1:]),
        "```",
        "",
        f"{os.cpu_count()} CPUs; load average {load_before[0]:.2f} before, {os.getloadavg()[0]:.2f} after; "
        f"{args.requests} requests per row at concurrency {args.concurrency} after 100 warm-ups; 0 ms "
        "model and web stand-ins. CPU: the `mmsr serve` process's user + system time over the run, "
        "searches included. The search tools' own CPU, measured in this process at the same "
        "concurrency: the local image search (hashing the query image, scanning the index) on the "
        f"same images, {figures['image_search_cpu_ms']:.2f} ms per search; the text search (the "
        "SearXNG call, page reads, extraction, summaries) against the mixed row's stand-ins, "
        f'{figures["text_search_cpu_ms"]:.2f} ms per search. The column "search work excluded" '
        "subtracts them per search of each kind.",
        "",
        "| workload | turns/req | searches/req | CPU ms/request | CPU ms/turn | CPU ms/turn, search work "
        "excluded | stand-in model CPU ms/call | p50 ms | req/s |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name in MIXES:
        f = figures[name]
        text = f["searches_per_request"] - f["image_searches_per_request"]
        own = (
            f["cpu_ms_per_request"]
            - f["image_searches_per_request"] * figures["image_search_cpu_ms"]
            - text * figures["text_search_cpu_ms"]
        )
        f["cpu_ms_per_turn_search_excluded"] = own / f["turns_per_request"]
        lines.append(
            f"| {name} | {f['turns_per_request']:.2f} | {f['searches_per_request']:.2f} | "
            f"{f['cpu_ms_per_request']:.2f} | {f['cpu_ms_per_turn']:.2f} | "
            f"{f['cpu_ms_per_turn_search_excluded']:.2f} | {f['model_cpu_ms_per_call']:.2f} | "
            f"{f['p50_ms']:.0f} | {f['rps']:.0f} |"
        )
    m = figures["memory"]
    lines += [
        "",
        f"Memory at concurrency 256 (mixed): RSS {m['rss_rest_mb']:.0f} MB at rest, peak "
        f"{m['rss_peak_mb']:.0f} MB: {1024 * m['mb_per_request_in_flight']:.0f} kB per request in flight.",
    ]
    if figures["soak"]["points"]:
        points = ", ".join(f"{n}: {mb:.0f}" for n, mb in figures["soak"]["points"])
        lines.append(
            f"Soak ({args.soak} mixed requests at concurrency 64), RSS MB after each tenth: {points}."
        )
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "gateway_cpu.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (args.out / "gateway_cpu.json").write_text(json.dumps(figures, indent=1) + "\n", encoding="utf-8")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
