"""``mmsr eval`` end to end: the oracle policy over a real world and index, in-process, through the
server's API, and through the command against a live server; the numbers are known in advance."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from mmsr_bench.eval import AgentRunner, Outcome, Row, ServerRunner, evaluate, markdown_report, summarize
from mmsr_bench.eval.cli import write_results
from mmsr_bench.world.questions import Question
from mmsr_serve.agent import SearchAgent
from mmsr_serve.api import Settings, create_app
from mmsr_serve.cli import app
from mmsr_serve.search.local import LocalIndex
from tests.api.live import serve_in_thread
from tests.eval.oracle import WorldOracle

pytestmark = pytest.mark.slow  # every test here builds a world first

# (split, mode) -> accuracy, search ratio, searches per question, mean turns. The oracle knows the
# 4 known entities' facts; it searches image then text for the 2 held-out and 4 fresh ones.
EXPECTED = {
    ("test-known", "off"): (1, 0, 0, 1),
    ("test-known", "always"): (1, 1, 2, 2),
    ("test-known", "auto"): (1, 0, 0, 1),
    ("test-unknown", "off"): (0, 0, 0, 1),
    ("test-unknown", "always"): (1, 1, 2, 2),
    ("test-unknown", "auto"): (1, 1, 2, 3),
    ("test-fresh", "off"): (0, 0, 0, 1),
    ("test-fresh", "always"): (1, 1, 2, 2),
    ("test-fresh", "auto"): (1, 1, 2, 3),
    ("all", "off"): (12 / 30, 0, 0, 1),
    ("all", "always"): (1, 1, 2, 2),
    ("all", "auto"): (1, 18 / 30, 36 / 30, (12 + 18 * 3) / 30),
}


def _figures(rows: list[Row]) -> dict[tuple[str, str], tuple[float, ...]]:
    return {
        (r.split, r.mode): tuple(
            round(x, 6) for x in (r.accuracy, r.search_ratio, r.searches_per_question, r.mean_turns)
        )
        for r in rows
    }


def _expected() -> dict[tuple[str, str], tuple[float, ...]]:
    return {key: tuple(round(float(x), 6) for x in value) for key, value in EXPECTED.items()}


async def test_in_process_evaluation_gives_the_known_table(
    oracle: WorldOracle, index: LocalIndex, questions: list[Question], tmp_path: Path
) -> None:
    runner = AgentRunner(SearchAgent(oracle, index), "oracle")
    outcomes = await evaluate(runner, questions, concurrency=3, progress=False)
    assert len(outcomes) == 3 * 30 and not [o for o in outcomes if o.error]
    rows = summarize(outcomes)
    assert _figures(rows) == _expected()
    auto = next(r for r in rows if (r.split, r.mode) == ("all", "auto"))
    assert (auto.image_searches_per_question, auto.text_searches_per_question, auto.n) == (0.6, 0.6, 30)
    report = markdown_report(rows, command="mmsr eval ...")
    assert "| mode | test-known | test-unknown | test-fresh | all | SR | searches/q |" in report
    assert "| auto (on demand) | 100.0 | 100.0 | 100.0 | 100.0 | 60.0% | 1.20 |" in report
    assert "| off (no search) | 100.0 | 0.0 | 0.0 | 40.0 | 0.0% | 0.00 |" in report
    written = write_results(tmp_path / "out", outcomes, title="oracle")
    assert written.startswith("## Accuracy")
    assert (tmp_path / "out" / "plot.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    lines = (tmp_path / "out" / "outcomes.jsonl").read_text().splitlines()
    assert [Outcome.from_json(json.loads(line)) for line in lines] == outcomes
    assert json.loads((tmp_path / "out" / "summary.json").read_text())[0]["model"] == "oracle"


async def test_the_server_runner_sees_what_the_agent_runner_sees(
    oracle: WorldOracle, index: LocalIndex, questions: list[Question]
) -> None:
    subset = [q for q in questions if q.split != "test-fresh"][::2]
    server_app = create_app(Settings(model="mmsr-test"), backend=oracle, search=index)
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=server_app), base_url="http://mmsr.test")
    remote = ServerRunner("http://mmsr.test/v1", "mmsr-test", http_client=client)
    local = AgentRunner(SearchAgent(oracle, index), "mmsr-test")
    via_server = await evaluate(remote, subset, progress=False)
    in_process = await evaluate(local, subset, progress=False)
    await remote.aclose()

    def strip(o: object) -> tuple[object, ...]:
        return tuple(getattr(o, f) for f in ("mode", "question_id", "answer", "correct", "searches", "turns"))

    assert [strip(o) for o in via_server] == [strip(o) for o in in_process]
    assert _figures(summarize(via_server)) == _figures(summarize(in_process))


def test_the_command_evaluates_a_live_server(
    oracle: WorldOracle, index: LocalIndex, question_files: list[Path], tmp_path: Path
) -> None:
    server_app = create_app(Settings(model="mmsr-test"), backend=oracle, search=index)
    with serve_in_thread(server_app) as live:
        args = ["eval", *map(str, question_files), "--server", f"{live.url}/v1", "--limit", "3"]
        result = CliRunner().invoke(app, [*args, "--out", str(tmp_path), "--no-progress"])
    assert result.exit_code == 0, result.output
    assert "| auto (on demand) | 100.0 | 100.0 | 100.0 | 100.0 | 66.7% | 1.33 |" in result.output
    assert "--server" in (tmp_path / "report.md").read_text()
    assert {p.name for p in tmp_path.iterdir()} == {"outcomes.jsonl", "summary.json", "report.md", "plot.png"}


def test_the_command_explains_what_is_missing(question_files: list[Path], tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["eval", str(question_files[0]), "--index", str(tmp_path)])
    assert result.exit_code == 1 and "--model is required" in result.output


async def test_max_new_tokens_caps_each_model_turn_through_the_server(questions: list[Question]) -> None:
    from mmsr_serve.backends import ScriptedBackend

    backend = ScriptedBackend(["<reason>r</reason><answer>A</answer>"] * 2)
    server_app = create_app(Settings(model="mmsr-test"), backend=backend)
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=server_app), base_url="http://mmsr.test")
    capped = ServerRunner("http://mmsr.test/v1", "mmsr-test", http_client=client, max_new_tokens=7)
    await capped.run(questions[0], "off")
    await ServerRunner("http://mmsr.test/v1", "mmsr-test", http_client=client).run(questions[0], "off")
    await client.aclose()
    assert backend.requests[0].max_tokens == 7 and backend.requests[1].max_tokens != 7


def test_the_command_grades_with_an_llm_judge(
    oracle: WorldOracle, index: LocalIndex, question_files: list[Path], tmp_path: Path
) -> None:
    from fastapi import FastAPI

    asked: list[str] = []
    judge_app = FastAPI()

    @judge_app.post("/v1/chat/completions")
    async def verdict(body: dict[str, object]) -> dict[str, object]:
        asked.append(str(body["messages"]))
        message = {"role": "assistant", "content": "CORRECT"}  # a lenient judge: every answer is right
        choice = {"index": 0, "message": message, "finish_reason": "stop"}
        return {"id": "j", "object": "chat.completion", "created": 0, "model": "judge", "choices": [choice]}

    server_app = create_app(Settings(model="mmsr-test"), backend=oracle, search=index)
    with serve_in_thread(server_app) as live, serve_in_thread(judge_app) as judge:
        args = ["eval", *map(str, question_files), "--server", f"{live.url}/v1", "--limit", "3"]
        args += ["--judge-model", "judge-7b", "--judge-url", f"{judge.url}/v1", "--judge-api-key", "k"]
        result = CliRunner().invoke(app, [*args, "--out", str(tmp_path), "--no-progress"])
    assert result.exit_code == 0, result.output
    # off: the 6 held-out answers ("I do not know.") are wrong by EM, right by this judge; every
    # other answer matched exactly, which settles it without asking
    assert len(asked) == 6
    assert "Accuracy (LLM-as-judge %, judge judge-7b)" in result.output
    assert "| off (no search) | 100.0 | 100.0 | 100.0 | 100.0 | 0.0% | 0.00 |" in result.output
    assert "| mmsr-test | all | off | 9 | 33.3 | 100.0 |" in result.output  # EM beside the judge's
    assert "--judge-model judge-7b" in (tmp_path / "report.md").read_text()
    assert "k" not in json.loads((tmp_path / "summary.json").read_text())[0]  # no key written
    alone = CliRunner().invoke(app, ["eval", str(question_files[0]), "--judge-model", "j"])
    assert alone.exit_code == 2 and "go together" in alone.output


def test_the_command_reads_a_released_parquet_question_set(
    oracle: WorldOracle, index: LocalIndex, questions: list[Question], tmp_path: Path
) -> None:
    # the world's held-out questions in the released FVQA layout: the same numbers as from JSONL
    import pyarrow as pa  # type: ignore[import-untyped]
    import pyarrow.parquet as pq  # type: ignore[import-untyped]

    held = [q for q in questions if q.split == "test-unknown"]
    assert held and all(q.image for q in held)
    table = {
        "prompt": [[{"role": "user", "content": f"<image>Question: {q.question}"}] for q in held],
        "images": [[{"bytes": Path(str(q.image)).read_bytes()}] for q in held],
        "reward_model": [{"ground_truth": q.answers[0], "candidate_answers": "[]"} for q in held],
        "data_source": ["mmsearch_r1/fvqa_test"] * len(held),
        "data_id": [f"fvqa_test_{i}" for i in range(len(held))],
        "category": ["search_required"] * len(held),
    }
    data = tmp_path / "fvqa_test.pq"
    pq.write_table(pa.table(table), data)
    server_app = create_app(Settings(model="mmsr-test"), backend=oracle, search=index)
    with serve_in_thread(server_app) as live:
        args = ["eval", str(data), "--server", f"{live.url}/v1", "--mode", "auto", "--mode", "off"]
        result = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "out"), "--no-progress"])
    assert result.exit_code == 0, result.output
    n, (acc, ratio, searches, _) = len(held), EXPECTED[("test-unknown", "auto")]
    split = "mmsearch_r1/fvqa_test"
    assert f"| mmsr-test | {split} | auto | {n} | {100 * acc:.1f} | {100 * ratio:.1f} | {searches:.2f} |" in (
        result.output
    )
    assert f"| mmsr-test | mmsearch_r1/fvqa_test | off | {n} | 0.0 | 0.0 |" in result.output
    outcomes = [json.loads(line) for line in (tmp_path / "out" / "outcomes.jsonl").read_text().splitlines()]
    assert {o["question_id"] for o in outcomes} == set(table["data_id"])
    assert {o["known"] for o in outcomes} == {False}  # search_required
