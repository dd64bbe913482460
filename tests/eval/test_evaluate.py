"""The evaluation's parts on their own: scoring, failures, concurrency, the tables' arithmetic."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path

import pytest

from mmsr_bench.eval import (
    EvaluationFailed,
    Outcome,
    RunResult,
    detail_table,
    evaluate,
    final_answer,
    headline_table,
    summarize,
)
from mmsr_bench.world.questions import Question, read_questions
from mmsr_serve.errors import BackendError


def _question(i: int, split: str = "s", answer: str = "Bamoti") -> Question:
    return Question(id=f"q{i}", question="Who?", answers=(answer, "Bamo"), split=split)


class FakeRunner:
    """Answers ``reply(question, mode)``; records the most runs it saw in flight at once."""

    label = "fake"

    def __init__(self, reply: object = "the Bamoti!", searches: int = 0) -> None:
        self.reply, self.searches = reply, searches
        self.in_flight = self.most_in_flight = 0

    async def run(self, question: Question, mode: str) -> RunResult:
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        await asyncio.sleep(0.001)
        self.in_flight -= 1
        if isinstance(self.reply, Exception):
            raise self.reply
        return RunResult(str(self.reply), "stop", self.searches, 0, 1 + self.searches)

    async def aclose(self) -> None:
        pass


async def test_answers_are_scored_with_the_rewards_normalisation() -> None:
    outcomes = await evaluate(FakeRunner(), [_question(0)], ["auto"], progress=False)
    assert outcomes[0].correct and outcomes[0].answer == "the Bamoti!"
    wrong = await evaluate(FakeRunner("Bamotix"), [_question(0)], ["auto"], progress=False)
    assert not wrong[0].correct


async def test_concurrency_is_bounded_and_order_is_mode_then_question() -> None:
    runner = FakeRunner()
    questions = [_question(i) for i in range(12)]
    outcomes = await evaluate(runner, questions, ["auto", "off"], concurrency=3, progress=False)
    assert runner.most_in_flight == 3
    assert [(o.mode, o.question_id) for o in outcomes[:2]] == [("off", "q0"), ("off", "q1")]
    assert [o.mode for o in outcomes].count("auto") == 12


async def test_a_failed_run_is_a_wrong_answer_and_all_failing_is_an_error() -> None:
    class Flaky(FakeRunner):
        async def run(self, question: Question, mode: str) -> RunResult:
            if question.id == "q1":
                raise BackendError("model server down")
            return await super().run(question, mode)

    outcomes = await evaluate(Flaky(), [_question(0), _question(1)], ["auto"], progress=False)
    assert [o.correct for o in outcomes] == [True, False]
    assert outcomes[1].error == "BackendError: model server down" and outcomes[1].finish_reason == "error"
    with pytest.raises(EvaluationFailed, match="model server down"):
        await evaluate(FakeRunner(BackendError("model server down")), [_question(0)], progress=False)
    with pytest.raises(ValueError, match="modes must be"):
        await evaluate(FakeRunner(), [_question(0)], ["sometimes"], progress=False)


def test_off_mode_replies_in_protocol_tags_are_reduced_to_the_answer() -> None:
    assert final_answer("<reason>it is the tower</reason><answer>Bamoti</answer>") == "Bamoti"
    assert final_answer("Bamoti, I think") == "Bamoti, I think"
    assert final_answer(None) is None


def _outcome(
    model: str, split: str, mode: str, correct: bool, image: int, text: int, error: bool = False
) -> Outcome:
    return Outcome(
        model=model,
        mode=mode,
        question_id="q",
        split=split,
        known=None,
        answers=("x",),
        answer="x" if correct else "y",
        correct=correct,
        image_searches=image,
        text_searches=text,
        turns=1 + image + text,
        finish_reason="error" if error else "stop",
        latency_s=0.1,
        error="BackendError: down" if error else None,
    )


def test_the_tables_show_the_right_numbers_for_known_outcomes() -> None:
    outcomes = [
        _outcome("sft", "a", "auto", True, 1, 1),
        _outcome("sft", "a", "auto", False, 0, 0),
        _outcome("sft", "b", "auto", True, 1, 0),
        _outcome("sft", "b", "auto", False, 0, 0, error=True),
        _outcome("grpo", "a", "auto", True, 0, 0),
        _outcome("grpo", "b", "auto", True, 1, 1),
        _outcome("sft", "a", "off", True, 0, 0),
    ]
    rows = {(r.model, r.split, r.mode): r for r in summarize(outcomes)}
    sft_all = rows[("sft", "all", "auto")]
    assert (sft_all.n, sft_all.accuracy, sft_all.search_ratio) == (4, 0.5, 0.5)
    assert (sft_all.searches_per_question, sft_all.image_searches_per_question) == (0.75, 0.5)
    assert (sft_all.mean_turns, sft_all.errors) == (1.75, 1)
    assert ("grpo", "a", "off") not in rows
    headline = headline_table(list(rows.values())).splitlines()
    assert headline[0] == "| model | mode | a | b | all | SR | searches/q |"
    assert "| sft | auto (on demand) | 50.0 | 50.0 | 50.0 | 50.0% | 0.75 |" in headline
    assert "| sft | off (no search) | 100.0 |  | 100.0 | 0.0% | 0.00 |" in headline
    assert "| grpo | auto (on demand) | 100.0 | 100.0 | 100.0 | 50.0% | 1.00 |" in headline
    detail = detail_table(list(rows.values()))
    assert "| sft | b | auto | 2 | 50.0 | 50.0 | 0.50 | 0.50 | 0.00 | 1.50 | 1 |" in detail


def test_question_files_are_validated_line_by_line(tmp_path: Path) -> None:
    good = tmp_path / "mine.jsonl"
    good.write_text('{"question": "Who?", "answers": "Bamoti", "image": "x.jpg", "extra": 1}\n\n')
    (q,) = read_questions(good)
    assert (q.id, q.split, q.answers, q.image) == ("mine-1", "mine", ("Bamoti",), str(tmp_path / "x.jpg"))
    assert q.to_json()["extra"] == 1
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"question": "Who?", "answers": ["a"]}\n{"question": "Who?", "answers": []}\n')
    with pytest.raises(ValueError, match="line 2"):
        read_questions(bad)


class FakeJudge:
    def __init__(self, fail_on: str | None = None) -> None:
        self.fail_on, self.asked = fail_on, 0

    async def is_correct(self, question: str, prediction: str | None, answers: Sequence[str]) -> bool:
        self.asked += 1
        if prediction == self.fail_on:
            raise BackendError("the judge model did not answer")
        return prediction is not None and prediction.startswith("Bamoti")


async def test_a_judge_grades_beside_exact_match_and_a_failed_verdict_falls_back() -> None:
    judge = FakeJudge(fail_on="nope")
    questions = [_question(0), _question(1)]
    close = await evaluate(FakeRunner("Bamotix"), questions, ["auto"], progress=False, judge=judge)
    assert [(o.correct, o.judged, o.verdict) for o in close] == [(False, True, True)] * 2
    failing = await evaluate(FakeRunner("nope"), [_question(2)], ["auto"], progress=False, judge=judge)
    assert failing[0].judged is None and "did not answer" in str(failing[0].judge_error)
    assert failing[0].verdict is False  # exact match decides where the judge could not
    rows = [r for r in summarize([*close, *failing]) if r.split == "all"]
    assert (rows[0].accuracy, rows[0].judge_accuracy, rows[0].judge_errors) == (0.0, 2 / 3, 1)
    assert "66.7" in headline_table(rows) and "judge %" in detail_table(rows)
    unjudged = summarize(await evaluate(FakeRunner(), [_question(0)], ["auto"], progress=False))
    assert unjudged[0].judge_accuracy is None and "judge" not in detail_table(unjudged)
