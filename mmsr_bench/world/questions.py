"""Question sets: one JSON object per line, the format both the trainer and ``mmsr eval`` read.

::

    {"id": "test-known-bamoti-0-year", "image": "images/test-known/bamoti-0.jpg",
     "question": "When was this built?", "answers": ["1843"], "entity": "Bamoti", "known": true,
     "split": "test-known", "kind": "landmark", "attribute": "year", "query": "Bamoti year"}

Required: ``question`` and ``answers`` (a list of accepted answers; a string is taken as one).
``image`` is a path relative to the file's folder (or absolute); without it the question is
text-only. ``split`` defaults to the file name without its extension. ``query`` is the text search
that finds the answer (what a trajectory should search for); ``kind`` and ``attribute`` say what
is asked. Generated worlds also write ``category`` (``search_free`` for known entities, else
``search_required``) and ``data_source``, which :mod:`mmsr_bench.data` reads; other fields are
kept in :attr:`Question.extra`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

SPLITS = ("train", "test-known", "test-unknown", "test-fresh", "stream")
"""train: known entities (answer without search) and unknown ones (search needed); test-known:
new views of known entities; test-unknown: held-out entities of the same world; test-fresh:
entities of a world from another seed; stream: never-repeating generated entities for training."""


@dataclass(frozen=True)
class Question:
    id: str
    question: str
    answers: tuple[str, ...]
    split: str
    image: str | None = None
    entity: str = ""
    known: bool | None = None
    kind: str = ""
    attribute: str = ""
    query: str = ""
    extra: dict[str, Any] = field(default_factory=dict, compare=False)
    """Fields of the record that this class does not name, kept as they were."""

    def to_json(self) -> dict[str, Any]:
        obj = {k: v for k, v in asdict(self).items() if k != "extra" and v not in (None, "")}
        obj["answers"] = list(self.answers)
        return {**obj, **self.extra}

    @classmethod
    def from_json(cls, obj: dict[str, Any], *, split: str = "", base: Path | None = None) -> Question:
        """Validate one record; ``image`` is resolved against ``base`` when it is relative."""
        if not isinstance(obj.get("question"), str) or not obj["question"].strip():
            raise ValueError('"question" must be a non-empty string')
        answers = obj.get("answers")
        answers = [answers] if isinstance(answers, str) else answers
        if not isinstance(answers, list) or not answers or not all(isinstance(a, str) for a in answers):
            raise ValueError('"answers" must be a string or a non-empty list of strings')
        image = obj.get("image")
        if image is not None and not isinstance(image, str):
            raise ValueError('"image" must be a path')
        if image and base is not None and not os.path.isabs(image):
            image = str(base / image)
        named = {f for f in cls.__dataclass_fields__ if f != "extra"}
        return cls(
            id=str(obj.get("id") or ""),
            question=obj["question"],
            answers=tuple(answers),
            split=str(obj.get("split") or split),
            image=image or None,
            entity=str(obj.get("entity") or ""),
            known=obj.get("known") if isinstance(obj.get("known"), bool) else None,
            kind=str(obj.get("kind") or ""),
            attribute=str(obj.get("attribute") or ""),
            query=str(obj.get("query") or ""),
            extra={k: v for k, v in obj.items() if k not in named},
        )


def read_questions(path: str | os.PathLike[str]) -> list[Question]:
    """The questions of a JSONL file, images resolved against its folder; ids default to
    ``<file stem>-<line>``. Raises ``ValueError`` naming the line of a malformed record."""
    path = Path(path)
    questions = []
    for line_no, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
            if not isinstance(obj, dict):
                raise ValueError("expected a JSON object")
            question = Question.from_json(obj, split=path.stem, base=path.parent)
        except ValueError as exc:
            raise ValueError(f"{path} line {line_no}: {exc}") from None
        if not question.id:
            question = Question(**{**question.__dict__, "id": f"{path.stem}-{line_no}"})
        questions.append(question)
    return questions


def write_questions(path: str | os.PathLike[str], questions: Iterable[Question]) -> int:
    """Write ``questions`` as JSONL (images as given, so relative paths stay relative); returns
    how many."""
    count = 0
    with Path(path).open("w", encoding="utf-8") as f:
        for question in questions:
            f.write(json.dumps(question.to_json(), ensure_ascii=False) + "\n")
            count += 1
    return count
