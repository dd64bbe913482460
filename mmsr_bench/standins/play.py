"""How the model stand-in plays the search protocol, from the conversation alone.

A conversation's trajectory is drawn once, from a stable hash (blake2b) of its first user message's
text and the seed, weighted by a :class:`Mix`; the same question always plays the same trajectory,
whoever sends it and however often. The turn is the number of assistant messages already in the
conversation, plus one. Trajectories (the action of each turn):

    direct       answer
    image        image search, answer
    text         text search, answer
    image_text   image search, text search, answer

A conversation that has already had more turns than its trajectory gets an answer. The image search
is played whether or not the conversation holds an image (a text-only question then gets mmsr's
"you cannot search" correction, and the next turn moves on). The text search's query is the first
words of the question: the text after the last ``Question:`` of the first user message (mmsr's
prompt packs end the first turn that way), else that message's text.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from mmsr_serve.agent.protocol import ANSWER, IMAGE_PLACEHOLDER, IMAGE_SEARCH, REASON, TEXT_SEARCH, ActionKind

__all__ = ["DEFAULT_MIX", "TRAJECTORIES", "Mix", "Play", "first_user_text", "parse_mix", "play"]

TRAJECTORIES: Mapping[str, tuple[ActionKind, ...]] = {
    "direct": ("answer",),
    "image": ("image_search", "answer"),
    "text": ("text_search", "answer"),
    "image_text": ("image_search", "text_search", "answer"),
}
DEFAULT_MIX = "direct=1,image=1,image_text=1"
QUERY_WORDS = 6
_FILLER_TEXT = (
    "the picture shows a tall object near water and I should check what it is before I answer "
    "because the details in the question may depend on a name a date or a place that only a "
    "search would confirm so I weigh what I know against what the results might add"
)
_FILLER = tuple(_FILLER_TEXT.split())


@dataclass(frozen=True)
class Mix:
    """Relative weights of the trajectories (``direct=1,image=1,image_text=1``)."""

    weights: tuple[tuple[str, float], ...]

    def choose(self, fraction: float) -> str:
        """The trajectory at ``fraction`` (in [0, 1)) of the cumulative weights."""
        total = sum(w for _, w in self.weights)
        point, acc = fraction * total, 0.0
        for name, weight in self.weights:
            acc += weight
            if point < acc:
                return name
        return self.weights[-1][0]

    def __str__(self) -> str:
        return ",".join(f"{name}={weight:g}" for name, weight in self.weights)


def parse_mix(spec: str) -> Mix:
    """``name=weight`` pairs, comma-separated, over :data:`TRAJECTORIES`; a ValueError otherwise."""
    weights: list[tuple[str, float]] = []
    for item in (part.strip() for part in spec.split(",")):
        if not item:
            continue
        name, eq, value = item.partition("=")
        name = name.strip()
        if name not in TRAJECTORIES:
            known = ", ".join(TRAJECTORIES)
            raise ValueError(f"unknown trajectory {name!r} in mix {spec!r}: choose from {known}")
        try:
            weight = float(value) if eq else 1.0
        except ValueError:
            raise ValueError(f"bad weight {value!r} for {name} in mix {spec!r}") from None
        if not weight >= 0:
            raise ValueError(f"the weight of {name} in mix {spec!r} must be 0 or more")
        weights.append((name, weight))
    if sum(w for _, w in weights) <= 0:
        raise ValueError(f"mix {spec!r} gives no trajectory a weight: write e.g. {DEFAULT_MIX}")
    return Mix(tuple(weights))


@dataclass(frozen=True)
class Play:
    """The stand-in's reply to one conversation: its trajectory, turn (from 1), action and text."""

    trajectory: str
    turn: int
    action: ActionKind
    text: str


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = [p.get("text") for p in content if isinstance(p, dict) and p.get("type") == "text"]
        return "\n".join(p for p in parts if isinstance(p, str))
    return ""


def first_user_text(messages: Sequence[Any]) -> str:
    """The text parts of the first user message (empty when there is none)."""
    for message in messages:
        if isinstance(message, dict) and message.get("role") == "user":
            return _text_of(message.get("content"))
    return ""


def _hash(text: str, seed: int) -> int:
    return int.from_bytes(hashlib.blake2b(f"{seed}\x00{text}".encode(), digest_size=8).digest(), "big")


def _query(question: str) -> str:
    marker = question.rfind("Question:")
    if marker >= 0:
        question = question[marker + len("Question:") :]
    words = question.replace("<", " ").replace(">", " ").split()[:QUERY_WORDS]
    return " ".join(words) or "standin query"


def _words(start: int, count: int) -> str:
    return " ".join(_FILLER[(start + i) % len(_FILLER)] for i in range(count))


def play(messages: Sequence[Any], mix: Mix, *, seed: int = 0, reasoning_words: int = 30) -> Play:
    """The protocol turn that the conversation ``messages`` asks for next."""
    question = first_user_text(messages)
    digest = _hash(question, seed)
    trajectory = mix.choose(digest / 2**64)
    steps = TRAJECTORIES[trajectory]
    done = sum(1 for m in messages if isinstance(m, dict) and m.get("role") == "assistant")
    action = steps[min(done, len(steps) - 1)]
    reason = f"{REASON[0]}{_words(digest + 7 * done, reasoning_words)}{REASON[1]}"
    if action == "image_search":
        act = f"{IMAGE_SEARCH[0]}{IMAGE_PLACEHOLDER}{IMAGE_SEARCH[1]}"
    elif action == "text_search":
        act = f"{TEXT_SEARCH[0]}{_query(question)}{TEXT_SEARCH[1]}"
    else:
        act = f"{ANSWER[0]}{_words(digest // 3, 3)}{ANSWER[1]}"
    return Play(trajectory, done + 1, action, reason + act)
