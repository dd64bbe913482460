"""The numbers of an evaluation, per model, split and mode, and the tables that show them.

For each group of outcomes (:class:`Row`):

- accuracy: exact match after the normalisation the reward shares (:func:`mmsr_bench.answers.is_correct`);
- judge accuracy: the LLM judge's verdicts where the evaluation had a judge (exact match for an
  answer the judge failed on, counted in judge errors), else None;
- search ratio: the share of questions with at least one search (the paper's SR);
- searches per question: image and text searches, summed, over all questions;
- mean turns: model turns per question (corrective turns included);
- errors: runs that failed (counted as wrong).

The split ``all`` pools every question of the evaluation (each question weighs the same).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from mmsr_bench.eval.evaluate import MODES, Outcome

ALL = "all"
MODE_NAMES = {"off": "off (no search)", "always": "always (RAG workflow)", "auto": "auto (on demand)"}


@dataclass(frozen=True)
class Row:
    model: str
    split: str
    mode: str
    n: int
    accuracy: float
    search_ratio: float
    searches_per_question: float
    image_searches_per_question: float
    text_searches_per_question: float
    mean_turns: float
    errors: int
    judge_accuracy: float | None = None
    judge_errors: int = 0

    @property
    def score(self) -> float:
        """The accuracy the tables and plot show: the judge's where there was one, else EM."""
        return self.accuracy if self.judge_accuracy is None else self.judge_accuracy

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _row(model: str, split: str, mode: str, group: Sequence[Outcome]) -> Row:
    n = len(group)
    return Row(
        model=model,
        split=split,
        mode=mode,
        n=n,
        accuracy=sum(o.correct for o in group) / n,
        search_ratio=sum(o.searches > 0 for o in group) / n,
        searches_per_question=sum(o.searches for o in group) / n,
        image_searches_per_question=sum(o.image_searches for o in group) / n,
        text_searches_per_question=sum(o.text_searches for o in group) / n,
        mean_turns=sum(o.turns for o in group) / n,
        errors=sum(o.error is not None for o in group),
        judge_accuracy=sum(o.verdict for o in group) / n if any(_was_judged(o) for o in group) else None,
        judge_errors=sum(o.judge_error is not None for o in group),
    )


def _was_judged(outcome: Outcome) -> bool:
    return outcome.judged is not None or outcome.judge_error is not None


def _ordered(values: Iterable[str], first: Sequence[str] = ()) -> list[str]:
    seen = list(dict.fromkeys(values))
    return [v for v in first if v in seen] + [v for v in seen if v not in first]


def summarize(outcomes: Sequence[Outcome]) -> list[Row]:
    """One row per (model, split, mode), then per (model, ``all``, mode); models and splits in
    the order they first appear, modes as off, always, auto."""
    rows = []
    models = _ordered(o.model for o in outcomes)
    splits = _ordered(o.split for o in outcomes)
    modes = _ordered((o.mode for o in outcomes), MODES)
    for model in models:
        for split in [*splits, ALL]:
            for mode in modes:
                group = [
                    o for o in outcomes if o.model == model and o.mode == mode and split in (ALL, o.split)
                ]
                if group:
                    rows.append(_row(model, split, mode, group))
    return rows


def _pct(x: float) -> str:
    return f"{100 * x:.1f}"


def headline_table(rows: Sequence[Row]) -> str:
    """The paper's table in miniature: accuracy per split, then over all, search ratio overall
    (the judge's accuracy when the evaluation had a judge, else exact match)."""
    splits = [s for s in _ordered(r.split for r in rows) if s != ALL]
    multi = len({r.model for r in rows}) > 1
    head = ["model"] * multi + ["mode", *splits, ALL, "SR", "searches/q"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    by_key = {(r.model, r.split, r.mode): r for r in rows}
    for r in (r for r in rows if r.split == ALL):
        cells = [r.model] * multi + [MODE_NAMES.get(r.mode, r.mode)]
        cells += [
            _pct(by_key[(r.model, s, r.mode)].score) if (r.model, s, r.mode) in by_key else "" for s in splits
        ]
        cells += [_pct(r.score), f"{_pct(r.search_ratio)}%", f"{r.searches_per_question:.2f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def detail_table(rows: Sequence[Row]) -> str:
    """Every row: n, accuracy, search ratio, searches (image, text) per question, turns, errors."""
    judged = any(r.judge_accuracy is not None for r in rows)
    head = ["model", "split", "mode", "n", "EM %"] + ["judge %"] * judged
    head += ["search ratio %", "searches/q", "image/q", "text/q", "turns", "errors"]
    head += ["judge errors"] * judged
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [r.model, r.split, r.mode, str(r.n), _pct(r.accuracy)]
        cells += [_pct(r.judge_accuracy) if r.judge_accuracy is not None else ""] * judged
        cells += [_pct(r.search_ratio)]
        cells += [f"{x:.2f}" for x in (r.searches_per_question, r.image_searches_per_question)]
        cells += [f"{r.text_searches_per_question:.2f}", f"{r.mean_turns:.2f}", str(r.errors)]
        cells += [str(r.judge_errors)] * judged
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def markdown_report(rows: Sequence[Row], *, command: str | None = None, judge: str | None = None) -> str:
    judged = any(r.judge_accuracy is not None for r in rows)
    measure = f"LLM-as-judge %, judge {judge or 'model'}" if judged else "EM %"
    parts = [
        f"## Accuracy ({measure}) per split, search ratio (SR) and searches per question",
        headline_table(rows),
    ]
    parts += ["## Details", detail_table(rows)]
    if command:
        parts += ["Reproduce with:", f"```bash\n{command}\n```"]
    return "\n\n".join(parts) + "\n"
