"""The bench's outputs: a console table, a markdown table, JSON files and a plot.

One row per (target, profile). ``OUT/summary.json`` holds every row's full figures, the command
and the server-side comparison; ``OUT/requests.jsonl`` one line per request (warm-up included,
marked); ``OUT/report.md`` the markdown table; ``OUT/sweep.png`` the plot when matplotlib
imports (the ``eval`` extra): latency (p50 and p99) against throughput, and searches per request
against the load.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mmsr_bench.load.profiles import ProfileRun

__all__ = ["Row", "markdown_table", "plot_rows", "text_table", "write_outputs"]


@dataclass
class Row:
    target: str
    """``mmsr`` (the gateway), ``client-loop`` (the baseline) or the target's URL."""
    run: ProfileRun
    summary: dict[str, Any]
    server: dict[str, Any] | None = None
    """:func:`~mmsr_bench.load.server_metrics.compare` of the run, where the target has /metrics."""
    standins: dict[str, Any] = field(default_factory=dict)
    """The stand-ins' own counters over the run, where the bench started them."""


_COLUMNS = (
    ("target", "target"),
    ("profile", "profile"),
    ("ok", "ok/sent"),
    ("rps", "req/s"),
    ("tps", "tok/s"),
    ("p50", "p50 ms"),
    ("p90", "p90 ms"),
    ("p99", "p99 ms"),
    ("ttft", "ttft p50"),
    ("img", "img/req"),
    ("txt", "txt/req"),
    ("share", "search %"),
    ("hit", "cache %"),
    ("cost", "$/1k req"),
    ("good", "goodput/s"),
)


def _ms(seconds: float) -> str:
    return "-" if seconds is None or math.isnan(seconds) else f"{seconds * 1000:.0f}"


def _num(value: float | None, digits: int = 2) -> str:
    return "-" if value is None or math.isnan(value) else f"{value:.{digits}f}"


def _pct(value: float) -> str:
    return "-" if math.isnan(value) else f"{100 * value:.0f}"


def _cells(row: Row) -> dict[str, str]:
    s = row.summary
    return {
        "target": row.target,
        "profile": row.run.profile.label,
        "ok": f"{s['ok']}/{s['requests']}",
        "rps": _num(s["throughput_rps"]),
        "tps": _num(s["output_tokens_per_s"], 0),
        "p50": _ms(s["latency_s"]["p50"]),
        "p90": _ms(s["latency_s"]["p90"]),
        "p99": _ms(s["latency_s"]["p99"]),
        "ttft": _ms(s["ttft_s"]["p50"]),
        "img": _num(s["searches_per_request"]["image"]),
        "txt": _num(s["searches_per_request"]["text"]),
        "share": _pct(s["search_share_of_latency"]),
        "hit": _pct(s["cache_hit_rate"]),
        "cost": _num(s["search_cost_usd_per_1k_requests"], 3),
        "good": _num(s["goodput_rps"]) if s["goodput_rps"] is not None else "-",
    }


def text_table(rows: Sequence[Row]) -> str:
    cells = [_cells(r) for r in rows]
    widths = {k: max(len(title), *(len(c[k]) for c in cells)) for k, title in _COLUMNS}
    lines = ["  ".join(title.rjust(widths[k]) for k, title in _COLUMNS)]
    lines += ["  ".join(c[k].rjust(widths[k]) for k, _ in _COLUMNS) for c in cells]
    return "\n".join(lines)


def markdown_table(rows: Sequence[Row]) -> str:
    cells = [_cells(r) for r in rows]
    lines = ["| " + " | ".join(title for _, title in _COLUMNS) + " |"]
    lines.append("|" + "|".join("---" if k in ("target", "profile") else "---:" for k, _ in _COLUMNS) + "|")
    lines += ["| " + " | ".join(c[k] for k, _ in _COLUMNS) + " |" for c in cells]
    return "\n".join(lines)


def _clean(value: Any) -> Any:
    """NaN as null, so the JSON is standard."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_clean(v) for v in value]
    return value


def write_outputs(out: str | os.PathLike[str], rows: Sequence[Row], meta: dict[str, Any]) -> list[Path]:
    """Write summary.json, requests.jsonl, report.md and (matplotlib permitting) sweep.png."""
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    summary = {
        **meta,
        "runs": [
            {
                "target": r.target,
                "profile": r.run.profile.label,
                "stopped_by": r.run.stopped_by,
                **r.summary,
                "server": r.server,
                "standins": r.standins,
            }
            for r in rows
        ],
    }
    written = [folder / "summary.json", folder / "requests.jsonl", folder / "report.md"]
    written[0].write_text(json.dumps(_clean(summary), indent=2) + "\n", encoding="utf-8")
    with written[1].open("w", encoding="utf-8") as f:
        for r in rows:
            for record in r.run.records:
                line = {"target": r.target, "profile": r.run.profile.label, **record.to_json()}
                f.write(json.dumps(_clean(line)) + "\n")
    command = meta.get("command")
    text = markdown_table(rows) + "\n"
    if command:
        text = f"```\n{command}\n```\n\n" + text
    written[2].write_text(text, encoding="utf-8")
    if len(rows) > 1:
        plot = plot_rows(rows, folder / "sweep.png", title=str(meta.get("title") or ""))
        if plot is not None:
            written.append(plot)
    return written


def plot_rows(rows: Sequence[Row], path: str | os.PathLike[str], *, title: str = "") -> Path | None:
    """Latency against throughput (one line per target, a point per profile) and searches per
    request against the load. None when matplotlib is not installed."""
    try:
        import matplotlib
    except ImportError:
        return None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    targets = list(dict.fromkeys(r.target for r in rows))
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    for target in targets:
        mine = [r for r in rows if r.target == target]
        x = [r.summary["throughput_rps"] for r in mine]
        (line,) = left.plot(
            x, [1000 * r.summary["latency_s"]["p50"] for r in mine], marker="o", label=f"{target} p50"
        )
        left.plot(
            x,
            [1000 * r.summary["latency_s"]["p99"] for r in mine],
            marker="^",
            linestyle="--",
            color=line.get_color(),
            label=f"{target} p99",
        )
        for r, xi in zip(mine, x, strict=True):
            left.annotate(
                r.run.profile.label.split(" ")[0].replace("concurrency=", "c="),
                (xi, 1000 * r.summary["latency_s"]["p50"]),
                textcoords="offset points",
                xytext=(4, 4),
                fontsize=7,
            )
        labels = [r.run.profile.label.split(" ")[0].replace("concurrency=", "c=") for r in mine]
        spr = [r.summary["searches_per_request"]["total"] for r in mine]
        right.plot(labels, spr, marker="o", color=line.get_color(), label=target)
    left.set_xlabel("throughput (requests/s)")
    left.set_ylabel("end-to-end latency (ms)")
    left.set_yscale("log")
    left.grid(True, alpha=0.3)
    left.legend(fontsize=7)
    right.set_xlabel("load profile")
    right.set_ylabel("searches per request")
    right.set_ylim(bottom=0)
    right.grid(True, alpha=0.3)
    right.legend(fontsize=7)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return Path(path)
