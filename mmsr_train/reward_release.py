"""The reward as the official release scores it (``reward_compat: release``), for reproducing its
training run; mmsr's own (:mod:`mmsr_train.reward`) stays the default.

Same formula, ``(1 - a) * acc * penalty + a * format``; where the two disagree (each difference
is a row of tests/train/test_reward_release.py):

- **Answer**: the last ``<answer>...</answer>`` of the last turn, wherever it stands (text after
  it is allowed); mmsr reads an answer only from a turn that ends with it.
- **Normalisation**: ASCII punctuation only is removed; mmsr removes Unicode punctuation too
  (``’``, ``«»``, ``。``), so ``Côte d’Ivoire`` matches ``Côte d'Ivoire`` in mmsr and not here.
  ``subem`` with an empty gold answer matches anything here, never in mmsr.
- **Format**: each turn, stripped, must match its shape as a whole with anything between the
  tags (``<reason></reason>`` may be empty, text may sit between ``</reason>`` and the action),
  hold each of its own tags exactly once and none of the other actions' tags: a search tag quoted
  in the reasoning spoils the turn. The image search is exactly ``<search><img></search>``
  (mmsr accepts it spaced). Shapes: answer; image or text search then answer; image search, text
  search, answer.
- **Searches** counted for the penalty: every turn but the last (the only turn, in a one-turn
  trajectory) that holds an image-search tag or both text-search tags, quoted or not.
"""

from __future__ import annotations

import re
import string
from collections.abc import Sequence

from mmsr_bench.answers import MatchMode

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_IMAGE = "<search><img></search>"
_SHAPES = {
    "answer": re.compile(r"^<reason>.*</reason>.*<answer>.*</answer>$", re.DOTALL),
    "image": re.compile(r"^<reason>.*</reason>.*<search><img></search>$", re.DOTALL),
    "text": re.compile(r"^<reason>.*</reason>.*<text_search>.*</text_search>$", re.DOTALL),
}
_ONCE = {
    "answer": ("<reason>", "</reason>", "<answer>", "</answer>"),
    "image": ("<reason>", "</reason>", _IMAGE),
    "text": ("<reason>", "</reason>", "<text_search>", "</text_search>"),
}
_NEVER = {
    "answer": (_IMAGE, "<text_search>", "</text_search>"),
    "image": ("<answer>", "</answer>", "<text_search>", "</text_search>"),
    "text": ("<answer>", "</answer>", _IMAGE),
}
_VALID = {1: (("answer",),), 2: (("image", "answer"), ("text", "answer")), 3: (("image", "text", "answer"),)}


def normalize(text: str) -> str:
    text = "".join(c for c in text.lower() if c not in string.punctuation)
    return " ".join(_ARTICLES.sub(" ", text).split())


def answer_of(turn: str) -> str | None:
    found = re.findall(r"<answer>(.*?)</answer>", turn, re.DOTALL)
    return found[-1].strip() if found else None


def correct(answer: str | None, golds: Sequence[str], mode: MatchMode) -> bool:
    if answer is None:
        return False
    pred = normalize(answer)
    if mode == "em":
        return any(normalize(g) == pred for g in golds)
    return any(normalize(g) in pred for g in golds)


def _is(shape: str, turn: str) -> bool:
    return (
        _SHAPES[shape].match(turn) is not None
        and all(turn.count(tag) == 1 for tag in _ONCE[shape])
        and not any(tag in turn for tag in _NEVER[shape])
    )


def well_formed(turns: Sequence[str]) -> bool:
    stripped = [t.strip() for t in turns]
    shapes = _VALID.get(len(turns), ())  # more than three turns: no valid shape
    return any(all(_is(s, t) for s, t in zip(shape, stripped, strict=True)) for shape in shapes)


def searches(turns: Sequence[str]) -> int:
    counted = turns[:1] if len(turns) == 1 else turns[:-1]
    return sum(_IMAGE in t or ("<text_search>" in t and "</text_search>" in t) for t in counted)
