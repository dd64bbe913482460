"""Answer matching: exact match (``em``) or containment (``subem``) after normalisation.

Normalisation (:func:`normalize_answer`): lower case, punctuation removed (every Unicode punctuation
character, which includes ASCII's), the articles a/an/the removed, white space collapsed. Evaluation
scores with it and the training reward (:mod:`mmsr_train.reward`) imports it, so both agree.
"""

from __future__ import annotations

import re
import string
import unicodedata
from collections.abc import Sequence
from typing import Literal

MatchMode = Literal["em", "subem"]
_ARTICLES = re.compile(r"\b(?:a|an|the)\b")


def normalize_answer(text: str) -> str:
    """Lower case, no punctuation (Unicode's and all of ASCII's, ``$+<=>^`|~`` included), no
    articles, collapsed white space."""
    text = "".join(
        c for c in text.lower() if c not in string.punctuation and not unicodedata.category(c).startswith("P")
    )
    return " ".join(_ARTICLES.sub(" ", text).split())


def is_correct(prediction: str | None, answers: Sequence[str], mode: MatchMode = "em") -> bool:
    """Whether ``prediction`` matches one of ``answers`` after normalisation (``em``: equal,
    ``subem``: the answer is contained in the prediction). A missing prediction is wrong."""
    if mode not in ("em", "subem"):
        raise ValueError(f"mode must be 'em' or 'subem', got {mode!r}")
    if prediction is None:
        return False
    pred = normalize_answer(prediction)
    golds = [normalize_answer(a) for a in answers]
    if mode == "em":
        return pred in golds
    return any(gold and gold in pred for gold in golds)
