"""The paper's table at the end of a GRPO run: the held-out questions in the search modes off,
always and auto.

The runs go through the trainer's own generation (the policy as trained, in-process or on vLLM)
and the same agent loop, scored by the reward's answer matching (``reward_mode``); they are written
to ``OUTPUT_DIR/final_eval/`` as ``mmsr eval`` writes its results (report.md with the table,
summary.json, outcomes.jsonl, plot.png) and logged as ``final_eval/<mode>/accuracy``,
``final_eval/<mode>/search_ratio`` and ``final_eval/<mode>/searches_per_question``.

Each process takes every n-th question; batches are padded to one size on every process (vLLM's
batch is agreed across processes) and the padding's runs are dropped.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mmsr_bench.answers import MatchMode, is_correct
from mmsr_bench.data import Sample
from mmsr_bench.eval.evaluate import Outcome, check_modes
from mmsr_bench.eval.report import ALL, Row, summarize
from mmsr_bench.eval.runners import final_answer
from mmsr_serve.agent.protocol import SearchMode
from mmsr_train.rollout import Rollout, RolloutTask

FOLDER = "final_eval"


def _outcome(
    label: str, mode: str, sample: Sample, rollout: Rollout, match: MatchMode, took: float
) -> Outcome:
    result = rollout.result
    answer = final_answer(result.answer)
    calls = result.search_calls
    return Outcome(
        model=label,
        mode=mode,
        question_id=sample.id,
        split=sample.data_source or "held-out",
        known=sample.known,
        answers=sample.answers,
        answer=answer,
        correct=is_correct(answer, sample.answers, match),
        image_searches=calls["image"],
        text_searches=calls["text"],
        turns=len(result.turns),
        finish_reason=result.finish_reason,
        latency_s=round(took, 4),
    )


def evaluate_modes(
    trainer: Any,
    samples: Sequence[Sample],
    modes: Sequence[str],
    *,
    match: MatchMode = "em",
    greedy: bool = False,
    label: str = "trained",
) -> list[Outcome]:
    """Every sample in every mode through ``trainer.rollout``; all processes' outcomes, gathered."""
    from accelerate.utils import gather_object

    accelerator = trainer.accelerator
    rank, world = accelerator.process_index, accelerator.num_processes
    batch = max(1, int(trainer.args.per_device_eval_batch_size))
    mine = list(range(rank, len(samples), world))
    chunks = math.ceil(math.ceil(len(samples) / world) / batch)
    outcomes: list[Outcome] = []
    for mode in check_modes(modes):
        for c in range(chunks):
            picked = mine[c * batch : (c + 1) * batch]
            padded = picked + [picked[-1] if picked else 0] * (batch - len(picked))
            tasks = [_task(samples[i], mode) for i in padded]
            started = time.perf_counter()
            rollouts = trainer.rollout(tasks, greedy=greedy)
            took = (time.perf_counter() - started) / len(tasks)
            outcomes += [
                _outcome(label, mode, samples[i], r, match, took)
                for i, r in zip(picked, rollouts[: len(picked)], strict=True)
            ]
    return list(gather_object(outcomes)) if world > 1 else outcomes


def _task(sample: Sample, mode: SearchMode) -> RolloutTask:
    return RolloutTask(sample.question, sample.image_bytes(), mode=mode)


def run_final_eval(
    trainer: Any,
    samples: Sequence[Sample],
    modes: Sequence[str],
    out: Path,
    *,
    match: MatchMode = "em",
    greedy: bool = False,
) -> list[Row]:
    """Evaluate, then (main process) write ``out/final_eval/`` and log the overall rows."""
    from mmsr_bench.eval.cli import write_results

    model = trainer.model
    was_training = model.training
    model.eval()
    try:
        outcomes = evaluate_modes(
            trainer, samples, modes, match=match, greedy=greedy, label=out.name or "trained"
        )
    finally:
        model.train(was_training)
    rows = summarize(outcomes)
    if trainer.accelerator.is_main_process:
        write_results(out / FOLDER, outcomes, title=f"{out.name}: held-out questions after training")
    metrics: dict[str, float] = {}
    for row in (r for r in rows if r.split == ALL):
        metrics[f"{FOLDER}/{row.mode}/accuracy"] = row.accuracy
        metrics[f"{FOLDER}/{row.mode}/search_ratio"] = row.search_ratio
        metrics[f"{FOLDER}/{row.mode}/searches_per_question"] = row.searches_per_question
    trainer.log(metrics)
    return rows
