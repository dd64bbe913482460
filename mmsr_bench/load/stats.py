"""The figures of one profile run, from its measured requests.

- throughput: requests answered successfully per second of the run's wall time (first measured
  request sent to the last answered), completion tokens per second;
- goodput: successful requests that met every SLO, per second;
- latency, time to first delta (``ttft``, streamed), time to first answer delta (``ttfa``):
  mean and p50 / p90 / p95 / p99 over the successful requests;
- errors by status (``0`` when no response came) and by message;
- searches per request by kind, search calls per second, the search share of latency (the time
  spent in searches over the end-to-end time, summed over requests), the cache hit rate, and the
  estimated search cost per 1,000 requests (from the server's price table, in the trace).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from mmsr_bench.load.records import RequestRecord

__all__ = ["SLO", "parse_slo", "percentile", "summarize"]

_METRICS = ("latency", "ttft", "ttfa")
_ALIASES = {"e2e": "latency", "e2el": "latency", "latency": "latency", "ttft": "ttft", "ttfa": "ttfa"}


@dataclass(frozen=True)
class SLO:
    metric: str
    """``latency``, ``ttft`` or ``ttfa``."""
    limit_s: float

    @property
    def label(self) -> str:
        return f"{self.metric}<={self.limit_s * 1000:g}ms"

    def met(self, record: RequestRecord) -> bool:
        value = record.latency_s if self.metric == "latency" else getattr(record, f"{self.metric}_s")
        return value is not None and value <= self.limit_s


def parse_slo(text: str) -> SLO:
    """``e2e:2s``, ``latency:1500ms``, ``ttft:200ms``, ``ttfa:1s`` (a bare number is seconds)."""
    from mmsr_bench.standins.latency import parse_duration

    name, _, value = text.partition(":")
    metric = _ALIASES.get(name.strip().lower())
    try:
        if metric is None:
            raise ValueError(name)
        return SLO(metric, parse_duration(value))
    except ValueError:
        raise ValueError(f"{text!r} is not an SLO: use e2e:2s, ttft:200ms or ttfa:1s") from None


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100) by linear interpolation; NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100
    low = math.floor(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


def _distribution(values: Sequence[float]) -> dict[str, float]:
    return {
        "mean": sum(values) / len(values) if values else math.nan,
        **{f"p{q}": percentile(values, q) for q in (50, 90, 95, 99)},
    }


def summarize(records: Sequence[RequestRecord], wall_s: float, slos: Sequence[SLO] = ()) -> dict[str, Any]:
    """The figures of ``records`` (the measured ones) over ``wall_s`` seconds."""
    ok = [r for r in records if r.ok]
    wall = max(wall_s, 1e-9)
    searches = [s for r in records for s in r.searches]
    by_kind = {kind: sum(r.search_count(kind) for r in records) for kind in ("image", "text")}
    searched = [s for s in searches if s.error is None]
    search_time = sum(s.latency_s for r in ok for s in r.searches)
    good = [r for r in ok if all(slo.met(r) for slo in slos)]
    failed = [r for r in records if not r.ok]
    summary: dict[str, Any] = {
        "requests": len(records),
        "ok": len(ok),
        "failed": len(failed),
        "wall_s": wall_s,
        "throughput_rps": len(ok) / wall,
        "output_tokens_per_s": sum(r.completion_tokens for r in ok) / wall,
        "goodput_rps": len(good) / wall if slos else None,
        "slos": [slo.label for slo in slos],
        "latency_s": _distribution([r.latency_s for r in ok]),
        "ttft_s": _distribution([r.ttft_s for r in ok if r.ttft_s is not None]),
        "ttfa_s": _distribution([r.ttfa_s for r in ok if r.ttfa_s is not None]),
        "turns_per_request": sum(r.turns for r in ok) / len(ok) if ok else math.nan,
        "prompt_tokens": sum(r.prompt_tokens for r in records),
        "completion_tokens": sum(r.completion_tokens for r in records),
        "errors_by_status": dict(Counter(str(r.status) for r in failed)),
        "errors": dict(Counter((r.error or f"HTTP {r.status}")[:200] for r in failed).most_common(10)),
        "finish_reasons": dict(Counter(r.finish_reason or "none" for r in ok)),
        "searches": {**by_kind, "total": len(searches), "failed": len(searches) - len(searched)},
        "searches_per_request": {
            kind: (n / len(records) if records else math.nan)
            for kind, n in {**by_kind, "total": len(searches)}.items()
        },
        "search_calls_per_s": len(searches) / wall,
        "search_latency_s": {
            kind: _distribution([s.latency_s for s in searches if s.kind == kind])
            for kind in ("image", "text")
        },
        "search_share_of_latency": search_time / sum(r.latency_s for r in ok) if ok else math.nan,
        "cache_hit_rate": sum(s.cached for s in searches) / len(searches) if searches else math.nan,
        "search_cost_usd_per_1k_requests": 1000 * sum(r.cost_usd for r in records) / len(records)
        if records
        else math.nan,
    }
    return summary
