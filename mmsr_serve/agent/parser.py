"""Reading model turns: which action a turn ends with, and whether a trajectory has a valid shape.

The protocol's tags and shapes are in :mod:`~mmsr_serve.agent.protocol`: a turn reasons inside
``<reason>...</reason>`` and ends with exactly one action: ``<answer>...</answer>``,
``<search><img></search>`` or ``<text_search>query</text_search>``.

The action is decided from the END of the turn, so a tag quoted inside the reasoning is not an
action. Parsing is lenient (what did the model ask for?), the format check is strict (does the
turn have exactly the protocol's shape?): serving acts on the first, the reward scores the second.
All functions here are pure.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from mmsr_serve.agent.protocol import ACTIONS as _ACTIONS
from mmsr_serve.agent.protocol import REASON, STOP_STRINGS, VALID_SHAPES, ActionKind

__all__ = [
    "STOP_STRINGS",
    "VALID_SHAPES",
    "ActionKind",
    "FormatCheck",
    "ParsedTurn",
    "check_trajectory",
    "is_valid_trajectory",
    "parse_turn",
    "restore_stop",
]

_TAG = r"</?(?:reason|answer|search|text_search)>"
_NO_TAG = rf"(?:(?!{_TAG}).)"
# A non-empty body without tags. Leading white space, then the first visible character, then the
# rest: one way to split any text, so a turn that does not match fails in linear time.
_BODY = rf"\s*(?:(?!{_TAG})\S){_NO_TAG}*"
_WELL_FORMED = re.compile(
    rf"\s*<reason>{_BODY}</reason>\s*"
    rf"(?:<answer>{_BODY}</answer>|<search>\s*<img>\s*</search>|<text_search>{_BODY}</text_search>)\s*",
    re.DOTALL,
)


@dataclass(frozen=True)
class ParsedTurn:
    action: ActionKind
    reasoning: str
    answer: str | None = None
    query: str | None = None
    error: str | None = None
    """Why the action is ``none`` (or what was wrong with it), for traces and the model's reminder."""
    well_formed: bool = False
    """The turn is exactly ``<reason>...</reason>`` followed by one action."""


# The exact reading (``exact=True``): a search only when the turn ends with its tag (``$`` as
# Python's: before one final newline), a text query on one line; otherwise the last answer.
_EXACT_IMAGE = re.compile(r"<search><img></search>$")
_EXACT_TEXT = re.compile(r"<text_search>.*</text_search>$")
_EXACT_QUERY = re.compile(r"<text_search>(.*?)</text_search>")
_EXACT_ANSWER = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)


def parse_turn(text: str, *, exact: bool = False) -> ParsedTurn:
    """Parse one model turn. Never raises: an unusable turn has action ``none`` and an ``error``.

    ``exact`` reads it as a rollout that matched exact tags at the end of the turn did (a prompt
    pack's ``exact_actions``): ``<search> <img> </search>`` is no search there, and a turn that
    ends with no search ends the run, answered by its last ``<answer>``, wherever it stands."""
    if exact:
        return _parse_exact(text)
    body = text.rstrip()
    well_formed = _WELL_FORMED.fullmatch(text) is not None
    for kind, open_tag, close_tag in _ACTIONS:
        if not body.endswith(close_tag):
            continue
        end = len(body) - len(close_tag)
        start = body.rfind(open_tag, 0, end)
        if start < 0:
            return ParsedTurn("none", _reasoning(body), error=f"{close_tag} without {open_tag}")
        content = body[start + len(open_tag) : end].strip()
        reasoning = _reasoning(body[:start])
        if kind == "image_search":
            if content != "<img>":
                return ParsedTurn("none", reasoning, error="an image search must be <search><img></search>")
            return ParsedTurn(kind, reasoning, well_formed=well_formed)
        if not content:
            what = "answer" if kind == "answer" else "query"
            return ParsedTurn("none", reasoning, error=f"empty {what}")
        if kind == "answer":
            return ParsedTurn(kind, reasoning, answer=content, well_formed=well_formed)
        return ParsedTurn(kind, reasoning, query=" ".join(content.split()), well_formed=well_formed)
    return ParsedTurn("none", _reasoning(body), error="the turn does not end with an action")


def _parse_exact(text: str) -> ParsedTurn:
    well_formed = _WELL_FORMED.fullmatch(text) is not None
    if found := _EXACT_IMAGE.search(text):
        return ParsedTurn("image_search", _reasoning(text[: found.start()]), well_formed=well_formed)
    if found := _EXACT_TEXT.search(text):
        query = [m.group(1) for m in _EXACT_QUERY.finditer(text)][-1]
        if not query:
            return ParsedTurn("none", _reasoning(text[: found.start()]), error="empty query")
        start = text.rfind("<text_search>", 0, found.end())
        return ParsedTurn("text_search", _reasoning(text[:start]), query=query, well_formed=well_formed)
    answers = list(_EXACT_ANSWER.finditer(text))
    if not answers:
        return ParsedTurn("none", _reasoning(text), error="the turn holds neither a search nor an answer")
    last = answers[-1]
    reasoning = _reasoning(text[: last.start()])
    return ParsedTurn("answer", reasoning, answer=last.group(1).strip(), well_formed=well_formed)


def _reasoning(prefix: str) -> str:
    start = prefix.find(REASON[0])
    if start < 0:
        return prefix.strip()
    end = prefix.rfind(REASON[1])
    body = prefix[start + len(REASON[0]) : end if end > start else len(prefix)]
    return body.strip()


def restore_stop(text: str, finish_reason: str) -> str:
    """Re-append the closing tag a backend stripped when it stopped on it.

    Only when generation ended on a stop (not on length) and the last opening action tag, placed
    after the reasoning, was left unclosed.
    """
    if finish_reason != "stop":
        return text
    body = text.rstrip()
    if body.endswith(STOP_STRINGS):
        return text
    reason_end = body.rfind(REASON[1])
    after_reason = reason_end + len(REASON[1]) if reason_end >= 0 else 0
    best, close = -1, ""
    for _, open_tag, close_tag in _ACTIONS:
        pos = body.rfind(open_tag)
        if pos >= after_reason and pos > best:
            best, close = pos, close_tag
    if best < 0 or close in body[best:]:
        return text
    return body + close


@dataclass(frozen=True)
class FormatCheck:
    valid: bool
    shape: tuple[ActionKind, ...]
    reason: str | None = None


def check_trajectory(turns: Sequence[str]) -> FormatCheck:
    """The format reward's test: every turn well formed and the actions in one of the valid shapes."""
    parsed = [parse_turn(t) for t in turns]
    shape = tuple(p.action for p in parsed)
    for i, p in enumerate(parsed):
        if not p.well_formed:
            return FormatCheck(False, shape, f"turn {i + 1} is not <reason>...</reason> + one action")
    if shape not in VALID_SHAPES:
        return FormatCheck(False, shape, f"actions {' -> '.join(shape) or '(none)'} are not a valid shape")
    return FormatCheck(True, shape)


def is_valid_trajectory(turns: Sequence[str]) -> bool:
    return check_trajectory(turns).valid
