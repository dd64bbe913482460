"""What the agent loop emits, and the result collected from it.

The loop yields, in order: ``TurnStarted``, ``TextDelta``..., ``TurnFinished``, then either
``SearchStarted`` + ``SearchFinished`` or a corrective turn, and so on, and always ends with one
``Finished`` carrying the :class:`AgentResult`. The server renders these as HTTP/SSE, the SDK
collects them, the trainer turns them into token ids.

The loop also says what the text means, so that no consumer needs to know the protocol's tags:
each ``TextDelta`` carries the ``reasoning`` (or, in the ``off`` mode, ``answer``) piece that it
made certain, and what only the end of a turn or run tells comes as ``ReasoningDelta`` (the rest of
a turn's reasoning, as parsed) and ``AnswerDelta`` (just before ``Finished``: the answer in the
search modes, where only the end of the run tells which turn's answer is final). The pieces add up
to :attr:`AgentResult.reasoning` and to the answer cut at the caller's stop sequences. The live
pieces ride on ``TextDelta`` rather than on events of their own, so they cost no extra event.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from mmsr_serve.agent.parser import ParsedTurn
from mmsr_serve.backends.base import Message
from mmsr_serve.search.base import Hit

SearchKind = Literal["image", "text"]
AgentFinishReason = Literal["stop", "length", "max_turns", "invalid"]
"""``stop``: answered. ``length``: a turn hit its token limit, or the conversation its token budget.
``max_turns``: the turns ran out without an answer. ``invalid``: with ``Limits.recover=False``
(training), the run ended on a malformed turn or a search over its limit."""


@dataclass(frozen=True)
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            self.prompt_tokens + other.prompt_tokens, self.completion_tokens + other.completion_tokens
        )


@dataclass(frozen=True)
class TurnRecord:
    index: int
    text: str
    parsed: ParsedTurn
    finish_reason: str
    usage: Usage
    latency_s: float

    @property
    def action(self) -> str:
        return self.parsed.action


@dataclass(frozen=True)
class SearchRecord:
    kind: SearchKind
    query: str | None
    """The text query; ``None`` for an image search (the query is the user's image)."""
    hits: list[Hit]
    turn: int
    provider: str | None = None
    cached: bool = False
    error: str | None = None
    latency_s: float = 0.0


@dataclass(frozen=True)
class AgentResult:
    answer: str | None
    finish_reason: AgentFinishReason
    turns: list[TurnRecord]
    searches: list[SearchRecord]
    usage: Usage
    messages: list[Message] = field(repr=False)
    """The whole conversation: history, the protocol turns, model turns and inserted results."""

    @property
    def search_calls(self) -> dict[str, int]:
        return {kind: sum(s.kind == kind for s in self.searches) for kind in ("image", "text")}

    @property
    def citations(self) -> list[str]:
        """URLs of the sources shown to the model, in order, without repeats."""
        return list(dict.fromkeys(h.url for s in self.searches for h in s.hits if h.url))

    @property
    def reasoning(self) -> str:
        return "\n\n".join(t.parsed.reasoning for t in self.turns if t.parsed.reasoning)


@dataclass(frozen=True)
class TurnStarted:
    turn: int


@dataclass(frozen=True)
class TextDelta:
    turn: int
    text: str
    reasoning: str = ""
    """The reasoning this delta made certain (the raw ``text`` may still hold tags)."""
    answer: str = ""
    """``off`` mode: the part of the reply this delta made certain."""


@dataclass(frozen=True)
class ReasoningDelta:
    turn: int
    text: str


@dataclass(frozen=True)
class AnswerDelta:
    text: str


@dataclass(frozen=True)
class TurnFinished:
    record: TurnRecord


@dataclass(frozen=True)
class SearchStarted:
    turn: int
    kind: SearchKind
    query: str | None


@dataclass(frozen=True)
class SearchFinished:
    record: SearchRecord


@dataclass(frozen=True)
class Finished:
    result: AgentResult


Event = (
    TurnStarted
    | TextDelta
    | ReasoningDelta
    | TurnFinished
    | SearchStarted
    | SearchFinished
    | AnswerDelta
    | Finished
)
