"""The server's own counts of a run: ``/metrics`` read before and after, and the difference.

``mmsr serve`` exports Prometheus counters (docs/server.md); the bench reads the ones it can
check against what it counted itself: chat completions answered (by status), searches (by kind,
with cache hits), model tokens, and the estimated search cost. A target without ``/metrics`` (a
model server, a server behind a gateway that hides it) gives no server-side figures.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Any

import httpx

from mmsr_bench.load.records import RequestRecord

__all__ = ["Snapshot", "compare", "read_metrics", "read_settled"]

Snapshot = dict[tuple[str, tuple[tuple[str, str], ...]], float]
"""Sample name and sorted labels -> value."""


async def read_metrics(client: httpx.AsyncClient, base_url: str) -> Snapshot | None:
    """The server's counters now, or None when it serves no Prometheus ``/metrics``."""
    from prometheus_client.parser import text_string_to_metric_families

    try:
        response = await client.get(base_url.rstrip("/") + "/metrics")
    except httpx.HTTPError:
        return None
    if response.status_code != 200:
        return None
    snapshot: Snapshot = {}
    try:
        for family in text_string_to_metric_families(response.text):
            for sample in family.samples:
                snapshot[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    except ValueError:
        return None
    return snapshot


async def read_settled(
    client: httpx.AsyncClient, base_url: str, *, interval_s: float = 0.1, timeout_s: float = 3.0
) -> Snapshot | None:
    """The counters once the server has finished the run: nothing in flight and two reads
    ``interval_s`` apart agreeing (a streamed response is counted after its last byte, which the
    client may have read a moment before). After ``timeout_s``, the last read."""
    deadline = time.monotonic() + timeout_s
    last = await read_metrics(client, base_url)
    while last is not None and time.monotonic() < deadline:
        await asyncio.sleep(interval_s)
        now = await read_metrics(client, base_url)
        if now is None:
            return last
        if _run_part(now) == _run_part(last) and not _sum(now, "mmsr_requests_in_flight"):
            return now
        last = now
    return last


def _run_part(snapshot: Snapshot) -> Snapshot:
    """The counters a run moves (the scrapes of /metrics themselves left out)."""
    return {key: v for key, v in snapshot.items() if ("path", "/metrics") not in key[1]}


def _sum(delta: Snapshot, name: str, **match: str) -> float:
    return sum(
        v for (n, labels), v in delta.items() if n == name and all((k, m) in labels for k, m in match.items())
    )


def compare(before: Snapshot, after: Snapshot, records: Sequence[RequestRecord]) -> dict[str, Any]:
    """Server-side deltas beside the bench's own counts over the same ``records`` (warm-up
    included, as the server counted them too), and whether each pair agrees."""
    delta: Snapshot = {key: after.get(key, 0.0) - before.get(key, 0.0) for key in after}
    completions = {
        dict(labels).get("status", ""): v
        for (n, labels), v in delta.items()
        if n == "mmsr_requests_total" and dict(labels).get("path") == "/v1/chat/completions" and v
    }
    server: dict[str, Any] = {
        "chat_completions": sum(completions.values()),
        "chat_completions_by_status": completions,
        "searches": {kind: _sum(delta, "mmsr_search_calls_total", kind=kind) for kind in ("image", "text")},
        "cache_hits": {
            kind: _sum(delta, "mmsr_search_cache_hits_total", kind=kind) for kind in ("image", "text")
        },
        "completion_tokens": _sum(delta, "mmsr_tokens_total", kind="completion"),
        "search_cost_usd": _sum(delta, "mmsr_search_cost_usd_total"),
    }
    client: dict[str, Any] = {
        "chat_completions": len(records),
        "searches": {kind: sum(r.search_count(kind) for r in records) for kind in ("image", "text")},
        "cache_hits": {
            kind: sum(s.cached for r in records for s in r.searches if s.kind == kind)
            for kind in ("image", "text")
        },
        "completion_tokens": sum(r.completion_tokens for r in records),
        "search_cost_usd": sum(r.cost_usd for r in records),
    }
    agree = {
        "chat_completions": server["chat_completions"] == client["chat_completions"],
        "searches": all(server["searches"][k] == client["searches"][k] for k in ("image", "text")),
        "cache_hits": all(server["cache_hits"][k] == client["cache_hits"][k] for k in ("image", "text")),
        "search_cost_usd": abs(server["search_cost_usd"] - client["search_cost_usd"])
        < 1e-6 * max(1, len(records)),
    }
    return {"server": server, "client": client, "agree": agree}
