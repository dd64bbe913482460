"""``mmsr bench``: load benchmarks of search-serving deployments, with search-call counts.

    mmsr bench run --url http://127.0.0.1:8000 --data questions.jsonl --profile concurrency=16
    mmsr bench run --standins --index world/corpus --data world/questions/test.jsonl \\
        --baseline --profile 1 --profile 16 --profile 64
    mmsr bench standin model|web     serve a stand-in (docs/bench.md)

Only typer is imported with the module; the bench itself when a command runs.
"""

from __future__ import annotations

import asyncio
import json
import shlex
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from mmsr_bench.standins.cli import app as standin_app

Opt = typer.Option
app = typer.Typer(
    help="Load benchmarks: latency, throughput and search calls of a deployment.", no_args_is_help=True
)
app.add_typer(standin_app, name="standin")


@app.command("run")
def run(
    data: Annotated[Path, Opt(help="Workload: JSONL of {question, image?, answers?} or FVQA parquet.")],
    url: Annotated[
        str | None, Opt(help="The server to load (mmsr serve or a model server), without /v1.")
    ] = None,
    standins: Annotated[
        bool, Opt(help="Start stand-in model and web servers and an mmsr serve in front of them.")
    ] = False,
    baseline: Annotated[
        bool, Opt(help="Also run the client-side loop against the model server directly, same workload.")
    ] = False,
    baseline_url: Annotated[
        str | None, Opt(help="Model server of the baseline (default: the config's backend URL).")
    ] = None,
    config: Annotated[
        Path | None, Opt(help="The agent configuration (as mmsr serve reads it), for the baseline's tools.")
    ] = None,
    index: Annotated[
        Path | None, Opt(help="Local corpus folder (image search of --standins, the baseline).")
    ] = None,
    model: Annotated[str | None, Opt(help="Model name (default: the first of /v1/models).")] = None,
    api_key: Annotated[str | None, Opt(help="Key for --url.", envvar="MMSR_API_KEY")] = None,
    profile: Annotated[
        list[str] | None,
        Opt(help="sync, concurrency=N (or N) or rate=R; repeat for a sweep (default: sync)."),
    ] = None,
    burstiness: Annotated[
        float, Opt(help="rate profiles: gamma shape of the arrivals (1: Poisson).", min=0.01)
    ] = 1.0,
    requests: Annotated[int, Opt(help="Measured requests per profile.", min=1)] = 100,
    duration: Annotated[
        float | None, Opt(help="Stop sending after this many seconds per profile.", min=0.1)
    ] = None,
    warmup: Annotated[int, Opt(help="Requests before each run, not measured.", min=0)] = 2,
    seed: Annotated[int, Opt(help="Seed of the question order and the arrivals.")] = 0,
    stream: Annotated[bool, Opt(help="Streamed requests (time to first delta is measured).")] = False,
    search_mode: Annotated[str, Opt(help="auto, always or off (mmsr's search_mode).")] = "auto",
    image_as: Annotated[str, Opt(help="data (data URLs) or url (the workload's image URLs).")] = "data",
    max_tokens: Annotated[int | None, Opt(help="max_tokens of each request.", min=1)] = None,
    extra_body: Annotated[str | None, Opt(help="JSON object merged into every request body.")] = None,
    slo: Annotated[
        list[str] | None, Opt(help="Goodput SLO: e2e:2s, ttft:200ms, ttfa:1s; repeatable.")
    ] = None,
    timeout: Annotated[float, Opt(help="Per-request timeout in seconds.", min=0.1)] = 300.0,
    model_latency: Annotated[str, Opt(help="--standins: model time per turn (50ms, exp:50ms ...).")] = "50ms",
    tokens_per_s: Annotated[
        float, Opt(help="--standins: streamed tokens per second (0: at once).", min=0)
    ] = 0.0,
    mix: Annotated[str, Opt(help="--standins: trajectory weights.")] = "direct=1,image=1,image_text=1",
    web_latency: Annotated[str, Opt(help="--standins: web search latency.")] = "100ms",
    out: Annotated[
        Path | None, Opt(help="Folder for summary.json, requests.jsonl, report.md, sweep.png.")
    ] = None,
    title: Annotated[str, Opt(help="Plot title.")] = "",
    progress: Annotated[bool, Opt(help="Show a progress bar.")] = True,
) -> None:
    """Load a deployment with a question set; report latency, throughput and searches.

    With --baseline, the same workload also runs through the search loop written client-side
    against the model server, so that mmsr serve and the hand-written loop compare in one table.
    """
    import httpx

    from mmsr_bench.load.bench import RunOptions, bench_deployment
    from mmsr_bench.load.profiles import parse_profile
    from mmsr_bench.load.stats import parse_slo
    from mmsr_bench.load.workload import WorkloadError, load_workload

    if (url is None) == (not standins):
        raise typer.BadParameter("give --url or --standins (one of them)")
    if standins and index is None:
        raise typer.BadParameter("--standins needs --index (the corpus of the gateway's image search)")
    if search_mode not in ("auto", "always", "off"):
        raise typer.BadParameter(f"--search-mode must be auto, always or off, not {search_mode!r}")
    if image_as not in ("data", "url"):
        raise typer.BadParameter(f"--image-as must be data or url, not {image_as!r}")
    try:
        profiles = [parse_profile(p, burstiness) for p in profile or ["sync"]]
        slos = [parse_slo(s) for s in slo or []]
        extra = json.loads(extra_body) if extra_body else {}
        if not isinstance(extra, dict):
            raise ValueError("--extra-body must be a JSON object")
        items = load_workload(data)
    except (ValueError, WorkloadError) as exc:
        raise typer.BadParameter(str(exc)) from exc
    if not stream and any(s.metric != "latency" for s in slos):
        raise typer.BadParameter("ttft and ttfa SLOs need --stream (no deltas are timed otherwise)")
    if baseline and (search_mode != "auto" or extra):
        raise typer.BadParameter(
            "--baseline runs the loop in the auto search mode with the agent configuration's limits: "
            "it takes no --search-mode other than auto and no --extra-body (set limits in --config)"
        )
    if standins and baseline_url:
        raise typer.BadParameter("--baseline-url is the model stand-in with --standins; leave it out")
    import signal

    # SIGTERM ends the run like Ctrl-C: the stand-ins and the server it started are stopped
    signal.signal(signal.SIGTERM, _interrupt)
    options = RunOptions(
        profiles=profiles,
        slos=slos,
        requests=requests,
        warmup=warmup,
        duration_s=duration,
        seed=seed,
        stream=stream,
        search_mode=search_mode,
        image_as="url" if image_as == "url" else "data",
        max_tokens=max_tokens,
        extra_body=extra,
        timeout_s=timeout,
    )
    folder = out or Path("bench-results") / time.strftime("%Y%m%d-%H%M%S")
    command = (
        "mmsr bench " + " ".join(shlex.quote(a) for a in sys.argv[sys.argv.index("run") :])
        if "run" in sys.argv
        else ""
    )
    try:
        if standins:
            from mmsr_bench.load.stack import StandinOptions, standin_stack

            assert index is not None
            stack_options = StandinOptions(
                index=index,
                model_latency=model_latency,
                tokens_per_s=tokens_per_s,
                mix=mix,
                web_latency=web_latency,
                seed=seed,
                config=config,
            )
            typer.echo("starting the stand-ins and mmsr serve ...", err=True)
            with standin_stack(stack_options) as stack:
                agent = _agent_config(
                    config,
                    index,
                    stack.agent_settings(),
                    {"SEARXNG_BASE_URL": stack.web_url},
                    max_tokens=max_tokens,
                )
                probe = {"model": stack.model_url.removesuffix("/v1"), "web": stack.web_url}
                rows = asyncio.run(
                    bench_deployment(
                        items,
                        stack.server_url,
                        options,
                        model=model,
                        api_key=api_key,
                        baseline_agent=agent if baseline else None,
                        baseline_url=stack.model_url,
                        standin_urls=probe,
                        on_done=_progress(options) if progress else None,
                    )
                )
        else:
            assert url is not None
            agent = _agent_config(config, index, {}, {}, max_tokens=max_tokens) if baseline else None
            rows = asyncio.run(
                bench_deployment(
                    items,
                    url,
                    options,
                    model=model,
                    api_key=api_key,
                    baseline_agent=agent,
                    baseline_url=baseline_url,
                    on_done=_progress(options) if progress else None,
                )
            )
    except (RuntimeError, ValueError, OSError, httpx.HTTPError) as exc:
        typer.echo(f"error: {type(exc).__name__}: {exc}", err=True)
        raise typer.Exit(1) from exc
    from mmsr_bench.load.report import text_table, write_outputs

    meta = {"command": command, "title": title, "workload": str(data), "items": len(items), **_machine()}
    typer.echo(text_table(rows))
    for row in rows:
        if row.server and not all(row.server["agree"].values()):
            typer.echo(
                f"warning: {row.target} {row.run.profile.label}: server counts differ: {row.server}", err=True
            )
        if row.target != "client-loop" and row.summary.get("bench_cpu_share", 0) > 0.8:
            typer.echo(
                f"warning: {row.target} {row.run.profile.label}: the bench process used "
                f"{row.summary['bench_cpu_share']:.0%} of a core; it may have limited the figures",
                err=True,
            )
        for name, seen in row.standins.items():
            if seen.get("saturated"):
                typer.echo(
                    f"warning: the {name} stand-in was saturated during {row.run.profile.label}", err=True
                )
    written = write_outputs(folder, rows, meta)
    typer.echo(f"results written to {folder}/ ({', '.join(p.name for p in written)})")


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def _agent_config(
    config: Path | None, index: Path | None, settings: dict[str, Any], env: dict[str, str], **limits: Any
) -> Any:
    import os

    from mmsr_serve.config import AgentConfig

    overrides = {**settings, "index": index, "search_cache": "off" if settings else None, **limits}
    return AgentConfig.load(config, env={**os.environ, **env}, **overrides)


def _machine() -> dict[str, Any]:
    import os
    import platform

    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    return {
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "load_average_at_end": [round(x, 2) for x in load] if load else None,
        }
    }


def _progress(options: Any) -> Callable[[str, Any], Callable[[Any], None]]:
    from tqdm import tqdm  # type: ignore[import-untyped]

    bars: dict[tuple[str, str], Any] = {}

    def for_run(target: str, profile: Any) -> Callable[[Any], None]:
        for bar in bars.values():
            bar.close()
        bar = tqdm(total=options.warmup + options.requests, desc=f"{target} {profile.label}", file=sys.stderr)
        bars[(target, profile.label)] = bar
        failed = [0]

        def done(record: Any) -> None:
            failed[0] += not record.ok
            bar.update(1)
            bar.set_postfix(failed=failed[0], refresh=False)

        return done

    return for_run
