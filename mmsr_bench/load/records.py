"""What the bench records of one request, whoever ran it (``mmsr serve`` or the client-side loop)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = ["RequestRecord", "SearchCall"]


@dataclass
class SearchCall:
    kind: str
    """``image`` or ``text``."""
    latency_s: float
    provider: str | None = None
    cached: bool = False
    error: str | None = None


@dataclass
class RequestRecord:
    index: int
    """Position in the run's request order (warm-up requests included)."""
    item: str
    """The workload item (its index in the workload file's order)."""
    start_s: float
    """When the request was sent, from the start of the run."""
    latency_s: float = 0.0
    """End to end: sent to last byte."""
    status: int = 0
    """HTTP status; 0 when no response came (connection refused or reset, client timeout)."""
    error: str | None = None
    """The error's type or message: an HTTP error, an in-stream error, a client failure."""
    ttft_s: float | None = None
    """Streamed: time to the first delta with text (reasoning or answer)."""
    ttfa_s: float | None = None
    """Streamed: time to the first delta of the answer (``content``)."""
    finish_reason: str | None = None
    turns: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    searches: list[SearchCall] = field(default_factory=list)
    cost_usd: float = 0.0
    warmup: bool = False
    answer: str | None = None

    @property
    def ok(self) -> bool:
        return self.status == 200 and self.error is None

    def search_count(self, kind: str) -> int:
        return sum(s.kind == kind for s in self.searches)

    def to_json(self) -> dict[str, Any]:
        row = asdict(self)
        row["searches"] = [asdict(s) for s in self.searches]
        return row
