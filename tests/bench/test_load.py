"""`mmsr bench`: workloads, profiles, figures, and a whole run against mmsr serve and its stand-ins."""

from __future__ import annotations

import asyncio
import json
import math
import time
from pathlib import Path

import pytest
from PIL import Image
from typer.testing import CliRunner

from mmsr_bench.load.profiles import Profile, parse_profile, run_profile
from mmsr_bench.load.records import RequestRecord, SearchCall
from mmsr_bench.load.stats import parse_slo, percentile, summarize
from mmsr_bench.load.workload import RequestFactory, WorkloadError, load_workload, request_order


def test_profiles_parse_and_refuse_nonsense() -> None:
    assert parse_profile("sync") == Profile("sync")
    assert (
        parse_profile("16")
        == parse_profile("concurrency=16")
        == parse_profile("c=16")
        == Profile("concurrency", 16)
    )
    assert parse_profile("rate=2.5", burstiness=0.5) == Profile("rate", 2.5, 0.5)
    assert parse_profile("rate=2").label == "rate=2/s" and parse_profile("c=4").concurrency == 4
    for bad in ("concurrency=0", "rate=-1", "fast", "rate=x", "sync=2"):
        with pytest.raises(ValueError, match="is not a load profile"):
            parse_profile(bad)


def test_slos_and_percentiles() -> None:
    assert parse_slo("e2e:2s").limit_s == 2.0 and parse_slo("ttft:200ms").limit_s == pytest.approx(0.2)
    assert parse_slo("ttfa:1.5").metric == "ttfa"
    with pytest.raises(ValueError, match="is not an SLO"):
        parse_slo("speed:1s")
    assert percentile([3.0, 1.0, 2.0, 4.0], 50) == 2.5 and percentile([5.0], 99) == 5.0
    assert math.isnan(percentile([], 50))


def test_request_order_oversamples_in_shuffled_passes() -> None:
    order = request_order(3, 8, seed=1)
    assert len(order) == 8 and sorted(order[:3]) == sorted(order[3:6]) == [0, 1, 2]
    assert order == request_order(3, 8, seed=1) and order != request_order(3, 8, seed=2)
    with pytest.raises(WorkloadError):
        request_order(0, 1, seed=0)


def test_workloads_resolve_images_and_name_bad_rows(tmp_path: Path) -> None:
    Image.new("RGB", (8, 8), (200, 10, 10)).save(tmp_path / "a.png")
    rows = [
        {"question": "Who built this?", "image": "a.png", "answers": ["Ada"]},
        {"question": "Where is it?", "image": "https://example.org/x.jpg"},
        {"id": "t", "question": "text only", "answers": "one"},
    ]
    path = tmp_path / "w.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    items = load_workload(path)
    assert [i.image for i in items] == [str(tmp_path / "a.png"), "https://example.org/x.jpg", None]
    assert items[2].id == "t" and items[2].answers == ("one",) and items[1].answers == ()

    factory = RequestFactory(items, model="m", stream=True, extra_body={"max_turns": 2})
    body = factory.body(0)
    assert body["messages"][0]["content"][0]["image_url"]["url"].startswith("data:image/png;base64,")
    assert factory.image_url(0) is factory.image_url(0)  # encoded once
    assert body["stream_options"] == {"include_usage": True} and body["return_trace"] is True
    assert body["search_mode"] == "auto" and body["max_turns"] == 2
    assert factory.body(2)["messages"][0]["content"] == "text only"
    with pytest.raises(WorkloadError, match="--image-as url needs image URLs"):
        RequestFactory(items, model="m", image_as="url")

    for text, message in [
        ("not json\n", "line 1: not JSON"),
        ("[1]\n", "expected a JSON object"),
        ('{"image": "a.png"}\n', 'non-empty "question"'),
        ('{"question": "q", "image": "missing.png"}\n', "missing.png does not exist"),
        ("", "no questions"),
    ]:
        path.write_text(text)
        with pytest.raises(WorkloadError, match=message):
            load_workload(path)
    with pytest.raises(WorkloadError, match=r"\.jsonl or \.parquet"):
        load_workload(tmp_path / "a.png")


async def test_a_closed_loop_keeps_its_width_and_leaves_warmup_out() -> None:
    in_flight, peak = 0, 0

    async def send(item: int, record: RequestRecord) -> RequestRecord:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        await asyncio.sleep(0.01)
        in_flight -= 1
        record.status = 200
        return record

    run = await run_profile(Profile("concurrency", 4), send, list(range(22)), warmup=2, requests=20)
    assert peak == 4 and len(run.records) == 22 and len(run.measured) == 20
    assert [r.warmup for r in run.records[:2]] == [True, True] and run.stopped_by == "requests"
    assert 0.04 <= run.wall_s < 1.0  # 20 requests of 10 ms, 4 at a time: about 50 ms


async def test_runs_stop_at_their_duration_and_rates_are_open_loop() -> None:
    async def slow(item: int, record: RequestRecord) -> RequestRecord:
        await asyncio.sleep(0.05)
        record.status = 200
        return record

    run = await run_profile(Profile("sync"), slow, list(range(100)), requests=100, duration_s=0.2)
    assert run.stopped_by == "duration" and 2 <= len(run.records) <= 6

    started = time.perf_counter()
    run = await run_profile(Profile("rate", 200.0), slow, list(range(20)), requests=20, seed=3)
    # open loop: 20 arrivals at 200/s take about 0.1 s, answers 50 ms each, all overlapping
    assert len(run.records) == 20 and time.perf_counter() - started < 1.0
    assert max(r.start_s for r in run.records) < 0.5


def test_summary_figures() -> None:
    def record(i: int, latency: float, status: int = 200, cached: bool = False) -> RequestRecord:
        r = RequestRecord(i, str(i), 0.0, latency_s=latency, status=status, ttft_s=latency / 2, turns=2)
        r.searches = [SearchCall("image", latency / 4, "local", cached)] if status == 200 else []
        r.completion_tokens, r.cost_usd = 10, 0.002
        return r

    records = [record(0, 1.0), record(1, 2.0, cached=True), record(2, 3.0), record(3, 0.5, status=503)]
    s = summarize(records, wall_s=2.0, slos=[parse_slo("e2e:2s")])
    assert s["ok"] == 3 and s["failed"] == 1 and s["errors_by_status"] == {"503": 1}
    assert s["throughput_rps"] == 1.5 and s["goodput_rps"] == 1.0 and s["output_tokens_per_s"] == 15
    assert s["latency_s"]["p50"] == 2.0 and s["ttft_s"]["p50"] == 1.0
    assert s["searches"]["image"] == 3 and s["searches_per_request"]["image"] == 0.75
    assert s["search_share_of_latency"] == pytest.approx(0.25) and s["cache_hit_rate"] == pytest.approx(1 / 3)
    assert s["search_cost_usd_per_1k_requests"] == pytest.approx(2.0)


@pytest.mark.slow
def test_bench_against_mmsr_serve_and_the_stand_ins_counts_what_the_servers_counted(
    tmp_path: Path, corpus_dir: Path
) -> None:
    """The whole command: stand-ins and mmsr serve in their own processes, the gateway and the
    client-side loop on one workload; every search the bench counted is one the server's /metrics
    and the stand-ins saw."""
    from mmsr_serve.cli import app
    from tests.corpus_fixture import read_docs

    docs = [d for d in read_docs(corpus_dir) if d.get("image")]
    rows = [
        {"question": f"What is shown in picture {i}?", "image": str(corpus_dir / d["image"])}
        for i, d in enumerate(docs)
    ]
    workload = tmp_path / "workload.jsonl"
    workload.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "out"
    args = ["bench", "run", "--standins", "--index", str(corpus_dir), "--data", str(workload), "--baseline"]
    args += [
        "--profile",
        "sync",
        "--profile",
        "concurrency=3",
        "--requests",
        "6",
        "--warmup",
        "1",
        "--stream",
    ]
    args += ["--model-latency", "5ms", "--web-latency", "5ms", "--out", str(out), "--no-progress"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "summary.json").read_text())
    runs = summary["runs"]
    assert [(r["target"], r["profile"]) for r in runs] == [
        ("mmsr", "sync"),
        ("client-loop", "sync"),
        ("mmsr", "concurrency=3"),
        ("client-loop", "concurrency=3"),
    ]
    lines = [json.loads(line) for line in (out / "requests.jsonl").read_text().splitlines()]
    assert len(lines) == 4 * 7
    for run in runs:
        assert run["ok"] == 6 and run["failed"] == 0 and run["ttft_s"]["p50"] is not None
        mine = [r for r in lines if r["target"] == run["target"] and r["profile"] == run["profile"]]
        measured = [r for r in mine if not r["warmup"]]
        text = sum(s["kind"] == "text" for r in mine for s in r["searches"])
        image = sum(s["kind"] == "image" for r in mine for s in r["searches"])
        assert image + text > 0
        # what the stand-ins saw over the measured requests: a model call per turn, a web search
        # per text search
        assert run["standins"]["model"]["requests"] == sum(r["turns"] for r in measured)
        assert run["standins"]["web"]["searches"] == sum(
            s["kind"] == "text" for r in measured for s in r["searches"]
        )
        if run["target"] == "mmsr":
            assert all(run["server"]["agree"].values()), run["server"]
            assert run["server"]["server"]["searches"] == {"image": image, "text": text}
            assert run["server"]["server"]["chat_completions"] == 7
    # the same workload: both sides searched the same number of times in each profile
    assert runs[0]["searches"] == runs[1]["searches"] and runs[2]["searches"] == runs[3]["searches"]
    assert "| mmsr | sync |" in (out / "report.md").read_text()
    assert (out / "sweep.png").stat().st_size > 1000
    assert "client-loop" in result.output and "req/s" in result.output
