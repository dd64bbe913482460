"""Per-call gateway overhead: one plain call through mmsr serve, through LiteLLM proxy, and direct.

    python benchmarks/gateway_anchor.py --litellm /path/to/venv/bin/litellm [--requests 400]

The anchor for the gateway's per-call cost: the same request (a question and its image,
``search_mode: off`` for mmsr, so no protocol, no search) sent to the model stand-in directly,
through ``mmsr serve`` and through LiteLLM proxy (``litellm --model openai/mmsr-standin
--api_base ...``), at concurrency 1 and 16. It reports each gateway's CPU time per call (its
process's user + system time over the run, from /proc, divided by the calls), and the latency
added over the direct call. LiteLLM is not a dependency of the project: install ``litellm[proxy]``
in a virtualenv of its own and pass its ``litellm`` executable. Results: OUT/gateway_anchor.md.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from mmsr_bench.load.bench import RunOptions, bench_deployment
from mmsr_bench.load.profiles import Profile
from mmsr_bench.load.stack import StandinOptions, standin_stack
from mmsr_bench.load.workload import load_workload
from mmsr_bench.world import WorldConfig, build_world

LITELLM_KEY = "sk-bench-" + secrets.token_hex(16)


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process and its children that were waited for (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = sum(int(fields[i]) for i in (11, 12, 13, 14))  # utime stime cutime cstime
    return ticks / os.sysconf("SC_CLK_TCK")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start_litellm(executable: str, model_url: str, log: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = _free_port()
    env = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True", "LITELLM_LOG": "ERROR"}
    env["LITELLM_MASTER_KEY"] = LITELLM_KEY
    env["OPENAI_API_KEY"] = "none"  # the model stand-in takes any key
    command = [executable, "--model", "openai/mmsr-standin", "--api_base", model_url, "--port", str(port)]
    process = subprocess.Popen(command, stdout=log.open("wb"), stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"litellm exited: {log.read_text()[-2000:]}")
        try:
            if httpx.get(url + "/health/liveliness", timeout=1).status_code == 200:  # no key needed
                return process, url
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    process.kill()
    raise RuntimeError("litellm did not start in 120 s")


def _start_floor(model_url: str, log: Path) -> tuple[subprocess.Popen[bytes], str]:
    """benchmarks/floor_relay.py on a port of its own, once it accepts connections."""
    port = _free_port()
    relay = Path(__file__).with_name("floor_relay.py")
    command = [sys.executable, str(relay), "--model-url", model_url, "--port", str(port)]
    process = subprocess.Popen(command, stdout=log.open("wb"), stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the floor relay exited: {log.read_text()[-2000:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return process, f"http://127.0.0.1:{port}"
        except OSError:
            time.sleep(0.1)
    process.kill()
    raise RuntimeError("the floor relay did not start in 30 s")


async def _measure(
    items: list[Any],
    url: str,
    pid: int | None,
    model: str | None,
    mmsr_fields: bool,
    concurrency: int,
    requests: int,
    api_key: str | None = None,
) -> dict[str, float]:
    options = RunOptions(
        profiles=[Profile("concurrency", concurrency)],
        requests=requests,
        warmup=min(20, requests),
        search_mode="off" if mmsr_fields else None,
    )
    before = _cpu_s(pid) if pid else 0.0
    rows = await bench_deployment(items, url, options, model=model, api_key=api_key)
    after = _cpu_s(pid) if pid else 0.0
    s = rows[0].summary
    if s["failed"]:
        print(f"{url}: {s['failed']} failed: {s['errors']}", file=sys.stderr)
    calls = rows[0].run.records
    return {
        "p50_ms": 1000 * s["latency_s"]["p50"],
        "p99_ms": 1000 * s["latency_s"]["p99"],
        "rps": s["throughput_rps"],
        "cpu_ms_per_call": 1000 * (after - before) / len(calls) if pid else float("nan"),
        "failed": s["failed"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--litellm", default=shutil.which("litellm"), help="LiteLLM proxy's executable")
    parser.add_argument("--requests", type=int, default=400)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 16])
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args()
    load_before = os.getloadavg()
    rows: list[tuple[str, int, dict[str, float]]] = []
    with tempfile.TemporaryDirectory() as tmp:
        world = Path(tmp) / "world"
        build_world(world, WorldConfig(seed=0, entities=8, fresh_entities=2, stream=0))
        items = load_workload(world / "questions" / "test-unknown.jsonl")
        with standin_stack(
            StandinOptions(index=world / "corpus", model_latency="0", web_latency="0")
        ) as stack:
            targets: list[tuple[str, str, int | None, bool]] = [
                ("direct", stack.model_url.removesuffix("/v1"), stack.pids["model"], False),
                ("mmsr serve", stack.server_url, stack.pids["server"], True),
            ]
            floor, url = _start_floor(stack.model_url, Path(tmp) / "floor.log")
            targets.append(("floor relay", url, floor.pid, False))
            litellm = None
            try:
                if args.litellm:
                    litellm, url = _start_litellm(args.litellm, stack.model_url, Path(tmp) / "litellm.log")
                    targets.append(("LiteLLM proxy", url, litellm.pid, False))
                for concurrency in args.concurrency:
                    for name, url, pid, mmsr_fields in targets:
                        model = None if name == "LiteLLM proxy" else stack.model_name
                        key = LITELLM_KEY if name == "LiteLLM proxy" else None
                        figures = asyncio.run(
                            _measure(items, url, pid, model, mmsr_fields, concurrency, args.requests, key)
                        )
                        rows.append((name, concurrency, figures))
                        print(name, concurrency, figures, file=sys.stderr, flush=True)
            finally:
                floor.terminate()
                floor.wait(timeout=20)
                if litellm is not None:
                    litellm.terminate()
                    litellm.wait(timeout=20)
    direct = {c: f for name, c, f in rows if name == "direct"}
    lines = [
        "# Per-call gateway overhead: one plain call (no search)",
        "",
        "```",
        "python benchmarks/gateway_anchor.py " + " ".join(sys.argv[1:]),
        "```",
        "",
        f"{os.cpu_count()} CPUs; load average {load_before[0]:.2f} before, {os.getloadavg()[0]:.2f} after; "
        f"{args.requests} calls per row after 20 warm-ups; model stand-in at 0 ms. CPU per call: the "
        "process's CPU time over the run / calls (for `direct`, the model stand-in's own).",
        "",
        "| target | concurrency | CPU ms/call | p50 ms | p99 ms | added p50 ms | req/s |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, c, f in rows:
        added = f["p50_ms"] - direct[c]["p50_ms"]
        lines.append(
            f"| {name} | {c} | {f['cpu_ms_per_call']:.2f} | {f['p50_ms']:.1f} | {f['p99_ms']:.1f} | "
            f"{added:+.1f} | {f['rps']:.0f} |"
        )
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "gateway_anchor.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
