"""Running question sets through a runner in every search mode, with bounded concurrency.

Every (question, mode) pair becomes one :class:`Outcome`, graded by exact match and, with a judge,
by the judge too (a judge that fails on one answer leaves that answer to exact match). At most
``concurrency`` runs are in flight at once; a progress bar counts them. A run that fails the way a
service fails (an :class:`~mmsr_serve.errors.MMSRError` such as a backend error or an unreadable
image, an openai API error, a missing file) is recorded as a wrong answer with its error, so one failure never
loses the rest of an evaluation; :class:`EvaluationFailed` is raised when every run failed, which
means the set-up is broken. Any other exception is a bug and propagates.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, Protocol, get_args

from openai import OpenAIError
from tqdm import tqdm  # type: ignore[import-untyped]

from mmsr_bench.answers import is_correct
from mmsr_bench.eval.runners import Runner, RunResult
from mmsr_bench.world.questions import Question
from mmsr_serve.agent.protocol import SearchMode
from mmsr_serve.errors import MMSRError

MODES: tuple[SearchMode, ...] = ("off", "always", "auto")


@dataclass(frozen=True)
class Outcome:
    model: str
    mode: str
    question_id: str
    split: str
    known: bool | None
    answers: tuple[str, ...]
    answer: str | None
    correct: bool
    image_searches: int
    text_searches: int
    turns: int
    finish_reason: str
    latency_s: float
    error: str | None = None
    judged: bool | None = None
    """The LLM judge's verdict (``mmsr eval --judge-model``); None without a judge or when the
    judge failed (``judge_error``), in which case the report counts ``correct`` (exact match)."""
    judge_error: str | None = None

    @property
    def verdict(self) -> bool:
        """The judge's verdict where there is one, else the exact match."""
        return self.correct if self.judged is None else self.judged

    @property
    def searches(self) -> int:
        return self.image_searches + self.text_searches

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "answers": list(self.answers)}

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> Outcome:
        return cls(**{**obj, "answers": tuple(obj["answers"])})


class EvaluationFailed(RuntimeError):
    """Every run failed: the first error says why (server down, wrong model name...)."""


def check_modes(modes: Sequence[str]) -> tuple[SearchMode, ...]:
    allowed = get_args(SearchMode)
    wrong = [m for m in modes if m not in allowed]
    if wrong or not modes:
        raise ValueError(f"modes must be some of {', '.join(allowed)}; got {', '.join(modes) or 'none'}")
    return tuple(m for m in MODES if m in modes)


class Judge(Protocol):
    """What grades an answer besides exact match (:class:`mmsr_bench.judge.LLMJudge`)."""

    async def is_correct(self, question: str, prediction: str | None, answers: Sequence[str]) -> bool: ...


async def _judge(
    judge: Judge | None, question: Question, answer: str | None
) -> tuple[bool | None, str | None]:
    if judge is None:
        return None, None
    try:
        return await judge.is_correct(question.question, answer, question.answers), None
    except (MMSRError, OpenAIError, OSError) as exc:  # one failed verdict must not lose the run
        return None, f"{type(exc).__name__}: {exc}"


async def _one(runner: Runner, question: Question, mode: SearchMode, judge: Judge | None = None) -> Outcome:
    started = time.perf_counter()
    try:
        result = await runner.run(question, mode)
        error = None
    except (MMSRError, OpenAIError, OSError) as exc:
        result, error = RunResult(None, "error", 0, 0, 0), f"{type(exc).__name__}: {exc}"
    latency = round(time.perf_counter() - started, 4)
    judged, judge_error = await _judge(judge, question, result.answer) if error is None else (None, None)
    return Outcome(
        model=runner.label,
        mode=mode,
        question_id=question.id,
        split=question.split,
        known=question.known,
        answers=question.answers,
        answer=result.answer,
        correct=is_correct(result.answer, question.answers),
        image_searches=result.image_searches,
        text_searches=result.text_searches,
        turns=result.turns,
        finish_reason=result.finish_reason,
        latency_s=latency,
        error=error,
        judged=judged,
        judge_error=judge_error,
    )


async def evaluate(
    runner: Runner,
    questions: Sequence[Question],
    modes: Sequence[str] = MODES,
    *,
    concurrency: int = 4,
    progress: bool = True,
    judge: Judge | None = None,
) -> list[Outcome]:
    """Run every question in every mode; outcomes come back in (mode, question) order. With a
    ``judge``, each answer is also graded by it (``Outcome.judged``)."""
    if concurrency < 1:
        raise ValueError("concurrency must be at least 1")
    jobs = [(q, m) for m in check_modes(modes) for q in questions]
    gate = asyncio.Semaphore(concurrency)
    bar = tqdm(total=len(jobs), desc=f"evaluating {runner.label}", unit="run", disable=not progress)

    async def bounded(question: Question, mode: SearchMode) -> Outcome:
        async with gate:
            outcome = await _one(runner, question, mode, judge)
        bar.update(1)
        bar.set_postfix_str(mode, refresh=False)
        return outcome

    try:
        outcomes = await asyncio.gather(*(bounded(q, m) for q, m in jobs))
    finally:
        bar.close()
    failed = [o for o in outcomes if o.error]
    if outcomes and len(failed) == len(outcomes):
        raise EvaluationFailed(f"all {len(outcomes)} runs failed; the first: {failed[0].error}")
    return list(outcomes)
