"""Running a benchmark: every profile against every target, side by side.

A target is something that answers workload items: :class:`ServerTarget` sends chat completions
to a server (``mmsr serve``, or a model server directly), :class:`LoopTarget` runs the
client-side loop (:mod:`~mmsr_bench.load.baseline`). For each profile the targets run one after
the other (mmsr, then the baseline, then the next profile), so that both meet the machine in the
same state; each run reads the server's ``/metrics`` and the stand-ins' counters before and after.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import httpx

from mmsr_bench.load.client import send_chat
from mmsr_bench.load.profiles import Profile, run_profile
from mmsr_bench.load.records import RequestRecord
from mmsr_bench.load.report import Row
from mmsr_bench.load.server_metrics import compare, read_metrics, read_settled
from mmsr_bench.load.stats import SLO, summarize
from mmsr_bench.load.workload import ImageAs, RequestFactory, WorkItem, request_order

__all__ = [
    "LoopTarget",
    "Plan",
    "RunOptions",
    "ServerTarget",
    "StandinProbe",
    "Target",
    "bench_deployment",
    "run_bench",
    "served_model",
]


@dataclass(frozen=True)
class Plan:
    profiles: Sequence[Profile]
    requests: int
    warmup: int = 0
    duration_s: float | None = None
    seed: int = 0
    slos: Sequence[SLO] = ()


class Target(Protocol):
    label: str
    metrics_url: str | None
    """Where ``/metrics`` lives (a server's base URL), or None."""

    async def send(self, index: int, record: RequestRecord) -> RequestRecord: ...


@dataclass
class ServerTarget:
    label: str
    base_url: str
    """Without ``/v1``."""
    factory: RequestFactory
    client: httpx.AsyncClient
    api_key: str | None = None
    metrics_url: str | None = None

    async def send(self, index: int, record: RequestRecord) -> RequestRecord:
        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else None
        url = self.base_url.rstrip("/") + "/v1/chat/completions"
        return await send_chat(self.client, url, self.factory.body(index), record, headers=headers)


@dataclass
class LoopTarget:
    label: str
    loop: Any
    """A :class:`~mmsr_bench.load.baseline.ClientSideLoop`."""
    metrics_url: str | None = None

    async def send(self, index: int, record: RequestRecord) -> RequestRecord:
        result: RequestRecord = await self.loop.run(index, record)
        return result


@dataclass
class StandinProbe:
    """The stand-ins' ``/standin/stats`` (reset after each run's warm-up, read after the run)."""

    urls: dict[str, str] = field(default_factory=dict)
    """name -> base URL (without ``/v1``)."""

    async def reset(self, client: httpx.AsyncClient) -> None:
        for url in self.urls.values():
            await client.post(url + "/standin/reset")

    async def read(self, client: httpx.AsyncClient) -> dict[str, Any]:
        out = {}
        for name, url in self.urls.items():
            out[name] = (await client.get(url + "/standin/stats")).json()
        return out


def _is_mmsr(snapshot: dict[Any, float]) -> bool:
    """Whether ``/metrics`` is mmsr's (a model server's own, vLLM's, has none of its counters)."""
    return any(name == "mmsr_requests_in_flight" for name, _ in snapshot)


async def run_bench(
    targets: Sequence[Target],
    order: Sequence[int],
    plan: Plan,
    *,
    control: httpx.AsyncClient,
    standins: StandinProbe | None = None,
    on_done: Callable[[str, Profile], Callable[[RequestRecord], None]] | None = None,
) -> list[Row]:
    """Every profile of ``plan`` against every target; ``order`` maps request i to an item."""
    rows = []
    for profile in plan.profiles:
        for target in targets:
            before = await read_metrics(control, target.metrics_url) if target.metrics_url else None
            run = await run_profile(
                profile,
                target.send,
                order,
                warmup=plan.warmup,
                requests=plan.requests,
                duration_s=plan.duration_s,
                seed=plan.seed,
                on_done=on_done(target.label, profile) if on_done else lambda record: None,
                # the stand-ins' counters cover the measured requests only
                after_warmup=(lambda: standins.reset(control)) if standins else None,
            )
            server = None
            if before is not None and target.metrics_url and _is_mmsr(before):
                after = await read_settled(control, target.metrics_url)
                server = compare(before, after, run.records) if after is not None else None
            seen = await standins.read(control) if standins else {}
            summary = summarize(run.measured, run.wall_s, plan.slos)
            # the bench's own process: the load generator (near 1.0 it limited the figures), and for
            # the client-side loop the loop itself, which runs in it as it would in a user's process
            summary["bench_cpu_share"] = run.cpu_s / run.wall_s if run.wall_s > 0.05 else math.nan
            rows.append(Row(target.label, run, summary, server, seen))
    return rows


@dataclass(frozen=True)
class RunOptions:
    """What ``mmsr bench run`` was asked, beyond the targets."""

    profiles: Sequence[Profile]
    requests: int
    warmup: int = 2
    duration_s: float | None = None
    seed: int = 0
    slos: Sequence[SLO] = ()
    stream: bool = False
    search_mode: str | None = "auto"
    """None: no mmsr fields at all (``search_mode``, ``return_trace``), for other servers."""
    image_as: ImageAs = "data"
    max_tokens: int | None = None
    extra_body: dict[str, Any] = field(default_factory=dict)
    timeout_s: float = 300.0

    @property
    def plan(self) -> Plan:
        return Plan(self.profiles, self.requests, self.warmup, self.duration_s, self.seed, self.slos)


async def served_model(client: httpx.AsyncClient, url: str, api_key: str | None = None) -> str:
    """The first model a server lists at ``url`` (without ``/v1``)."""
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else None
    response = await client.get(url.rstrip("/") + "/v1/models", headers=headers)
    if response.status_code != 200:
        raise RuntimeError(f"{url}/v1/models answered {response.status_code}: give --model")
    data = response.json().get("data") or []
    if not data:
        raise RuntimeError(f"{url}/v1/models lists no model: give --model")
    return str(data[0]["id"])


async def bench_deployment(
    items: Sequence[WorkItem],
    url: str,
    options: RunOptions,
    *,
    model: str | None = None,
    api_key: str | None = None,
    baseline_agent: Any = None,
    baseline_url: str | None = None,
    standin_urls: dict[str, str] | None = None,
    on_done: Callable[[str, Profile], Callable[[RequestRecord], None]] | None = None,
    label: str = "mmsr",
) -> list[Row]:
    """Load the server at ``url`` (and, given ``baseline_agent``, an
    :class:`~mmsr_serve.config.AgentConfig`, the client-side loop against ``baseline_url`` or
    the configuration's model server) with ``items`` under every profile of ``options``."""
    import openai

    from mmsr_bench.load.baseline import ClientSideLoop
    from mmsr_serve.agent.prompts import default_pack, load_pack

    width = max(p.concurrency or 1024 for p in options.profiles)
    limits = httpx.Limits(max_connections=width + 8, max_keepalive_connections=width + 8)
    timeout = httpx.Timeout(options.timeout_s, connect=10.0)
    async with (
        httpx.AsyncClient(limits=limits, timeout=timeout) as client,
        httpx.AsyncClient(timeout=30.0) as control,
    ):
        name = model or await served_model(control, url, api_key)
        factory = RequestFactory(
            items,
            model=name,
            stream=options.stream,
            search_mode=options.search_mode,
            image_as=options.image_as,
            max_tokens=options.max_tokens,
            trace=options.search_mode is not None,
            extra_body=options.extra_body,
        )
        targets: list[Target] = [ServerTarget(label, url, factory, client, api_key, metrics_url=url)]
        tools = None
        if baseline_agent is not None:
            agent = baseline_agent
            model_url = baseline_url or (agent.backend_urls[0] if agent.backend_urls else None)
            if model_url is None:
                raise ValueError("the baseline needs a model server URL (--baseline-url, or backend_urls)")
            base_model = agent.model or await served_model(control, model_url.removesuffix("/v1"))
            tools = agent.build_search()
            pack_file = agent.prompt_pack_file()
            openai_client = openai.AsyncOpenAI(
                base_url=model_url,
                api_key=agent.backend_api_key or "none",
                timeout=options.timeout_s,
                max_retries=0,
            )
            loop = ClientSideLoop(
                openai_client,
                model=base_model,
                factory=factory,
                tools=tools,
                pack=load_pack(pack_file) if pack_file else default_pack(),
                limits=agent.limits(),
                stream=options.stream,
            )
            targets.append(LoopTarget("client-loop", loop))
        order = request_order(len(items), options.warmup + options.requests, options.seed)
        try:
            return await run_bench(
                targets,
                order,
                options.plan,
                control=control,
                standins=StandinProbe(standin_urls) if standin_urls else None,
                on_done=on_done,
            )
        finally:
            if tools is not None:
                await tools.aclose()
                await openai_client.close()
