"""The model protocol in one place: its tags, actions, valid shapes, search modes, and the live
readers that tell, while a turn streams, which text is already certain reasoning or answer.

The protocol (MMSearch-R1, arXiv 2506.20670): a turn reasons inside ``<reason>...</reason>`` and
ends with exactly one action: ``<answer>...</answer>``, ``<search><img></search>`` or
``<text_search>query</text_search>``; search results come back inside ``<information>``. The
parser (:mod:`~mmsr_serve.agent.parser`) reads finished turns; :class:`LiveReasoning` and
:class:`LiveText` read streaming ones, each delta in time proportional to its own length.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

__all__ = [
    "ACTIONS",
    "ANSWER",
    "IMAGE_PLACEHOLDER",
    "IMAGE_SEARCH",
    "INFORMATION",
    "REASON",
    "STOP_STRINGS",
    "TAGS",
    "TEXT_SEARCH",
    "VALID_SHAPES",
    "ActionKind",
    "LiveReasoning",
    "LiveText",
    "SearchMode",
    "cut_after_stop",
    "cut_at_stop",
]

ActionKind = Literal["answer", "image_search", "text_search", "none"]
SearchMode = Literal["auto", "always", "off"]
"""``auto``: the model decides; ``always``: the RAG workflow; ``off``: plain chat, no protocol."""

REASON = ("<reason>", "</reason>")
ANSWER = ("<answer>", "</answer>")
IMAGE_SEARCH = ("<search>", "</search>")
IMAGE_PLACEHOLDER = "<img>"
TEXT_SEARCH = ("<text_search>", "</text_search>")
INFORMATION = ("<information>", "</information>")
TAGS: tuple[str, ...] = (*REASON, *ANSWER, *IMAGE_SEARCH, IMAGE_PLACEHOLDER, *TEXT_SEARCH, *INFORMATION)
"""Every tag, in the order the tiny tokenizer gives them ids."""

ACTIONS: tuple[tuple[ActionKind, str, str], ...] = (
    ("answer", *ANSWER),
    ("image_search", *IMAGE_SEARCH),
    ("text_search", *TEXT_SEARCH),
)
STOP_STRINGS: tuple[str, ...] = tuple(close for _, _, close in ACTIONS)
"""Generation stops on the closing tags of the three actions."""

VALID_SHAPES: frozenset[tuple[ActionKind, ...]] = frozenset(
    {
        ("answer",),
        ("image_search", "answer"),
        ("text_search", "answer"),
        ("image_search", "text_search", "answer"),
    }
)

_REASONING_ENDS = (REASON[1], ANSWER[0], IMAGE_SEARCH[0], TEXT_SEARCH[0])
"""What ends a turn's reasoning: its closing tag, or an action tag (a model that forgot to close)."""


def cut_at_stop(text: str, stops: Sequence[str]) -> str:
    """``text`` before the first of ``stops`` it contains."""
    cuts = [text.find(s) for s in stops if s in text]
    return text[: min(cuts)] if cuts else text


def cut_after_stop(text: str, stops: Sequence[str], start: int = 0) -> tuple[str, bool]:
    """``text`` cut just after the earliest-ending of ``stops`` found at or after ``start`` (the
    stop string kept, as a backend that stopped on it returns it), and whether one was found."""
    ends = [i + len(s) for s in stops if s and (i := text.find(s, start)) >= 0]
    return (text[: min(ends)], True) if ends else (text, False)


def partial_suffix(text: str, tokens: Sequence[str]) -> int:
    """Length of the longest end of ``text`` that could start one of ``tokens``."""
    best = 0
    for token in tokens:
        for size in range(min(len(token) - 1, len(text)), best, -1):
            if token.startswith(text[-size:]):
                best = size
                break
    return best


class LiveReasoning:
    """The reasoning of a run's turns as it streams: each turn's first ``<reason>`` block, stripped,
    a blank line between turns, so the pieces add up to :attr:`AgentResult.reasoning`.

    ``feed(delta)`` per model delta, ``finish(parsed_reasoning)`` when the turn is parsed (the
    parser's reading is final), ``next_turn()`` before the next turn. A delta costs time in
    proportion to its own length (and the tags'), not to the turn so far.
    """

    _LONGEST = max(map(len, (*_REASONING_ENDS, REASON[0])))

    def __init__(self) -> None:
        self._any_sent = False
        self.next_turn()

    def next_turn(self) -> None:
        self._raw = ""
        self._scanned = 0  # no tag starts before this that has not been seen
        self._start = -1  # the first visible character of the reasoning, once known
        self._body = -1  # just after <reason>, once seen
        self._sent = -1  # raw index up to which the reasoning was sent
        self._ended = False
        self._separated = False

    def feed(self, delta: str) -> str:
        if self._ended or not delta:
            return ""
        self._raw += delta
        raw, back = self._raw, max(0, self._scanned - self._LONGEST + 1)
        if self._body < 0:
            found = raw.find(REASON[0], back)
            self._scanned = len(raw)
            if found < 0:
                return ""
            self._body = self._start = found + len(REASON[0])
            back = self._body
        back = max(back, self._body)
        if "<" in raw[back:]:  # every tag starts with it: most deltas need no search at all
            ends = [i for i in (raw.find(tag, back) for tag in _REASONING_ENDS) if i >= 0]
        else:
            ends = []
        self._scanned = len(raw)
        if ends:
            self._ended, end = True, min(ends)
        elif "<" in raw[-self._LONGEST :]:
            end = len(raw) - partial_suffix(raw[-self._LONGEST :], _REASONING_ENDS)
        else:
            end = len(raw)
        while self._start < end and raw[self._start].isspace():  # the leading white space
            self._start += 1
        while end > self._start and raw[end - 1].isspace():  # held back: more may follow
            end -= 1
        sent = max(self._sent, self._start)
        if end <= sent:
            return ""
        self._sent = end
        return self._separate(raw[sent:end])

    def finish(self, reasoning: str) -> str:
        """The rest of the turn's reasoning, as the parser read it."""
        self._ended = True
        sent = self._raw[self._start : self._sent] if self._sent >= 0 else ""
        if len(reasoning) <= len(sent) or not reasoning.startswith(sent):
            return ""
        return self._separate(reasoning[len(sent) :])

    def _separate(self, piece: str) -> str:
        if self._any_sent and not self._separated:
            piece = "\n\n" + piece
        self._any_sent = self._separated = True
        return piece


class LiveText:
    """A plain reply as it streams (the ``off`` mode): leading white space dropped, nothing sent
    that a stop sequence may still cut, trailing white space held back until more text follows.
    Like :class:`LiveReasoning`, a delta costs time in proportion to its own length."""

    def __init__(self, stops: Sequence[str]) -> None:
        self.stops = tuple(s for s in stops if s)
        self._longest = max(map(len, self.stops), default=0)
        self._raw = ""
        self._start = 0  # the first visible character, once seen (leading white space skipped)
        self._visible = False
        self._scanned = 0  # no stop starts before this that has not been seen
        self._sent = 0  # raw index up to which the reply was sent
        self._cut = False

    def feed(self, delta: str) -> str:
        if self._cut or not delta:
            return ""
        self._raw += delta
        raw = self._raw
        while not self._visible and self._start < len(raw):
            self._visible = not raw[self._start].isspace()
            self._start += not self._visible
        back = max(self._start, self._scanned - self._longest + 1)
        cuts = [i for s in self.stops if (i := raw.find(s, back)) >= 0]
        self._scanned = len(raw)
        if cuts:
            self._cut, end = True, min(cuts)
        else:
            tail = raw[max(self._start, len(raw) - self._longest) :]
            end = len(raw) - partial_suffix(tail, self.stops)
            while end > self._start and raw[end - 1].isspace():  # held back: more may follow
                end -= 1
        sent = max(self._sent, self._start)
        if end <= sent:
            return ""
        self._sent = end
        return raw[sent:end]

    def finish(self, final: str) -> str:
        """What the final reply adds to what was sent (nothing if it does not extend it)."""
        sent = self._raw[self._start : max(self._sent, self._start)]
        if len(final) <= len(sent) or not final.startswith(sent):
            return ""
        return final[len(sent) :]
