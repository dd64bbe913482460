"""Counting provider calls and estimating what they cost.

Every call a web provider makes (each HTTP attempt, retries included) is recorded by a
:class:`Meter` with the provider's name and an outcome (``ok``, ``auth_error``, ``rate_limited``,
``server_error``, ``timeout``, ``connection_error``, ``client_error``, ``bad_response``). An
optional :class:`PriceTable` turns the successful ones into an estimated cost: a price per call
(search APIs) and/or per 1,000 tokens (Jina Reader, the summarizer). Failed calls cost nothing;
searches answered from the cache never reach a provider, so they cost nothing either.

Each record goes to the meter's listeners (the server's Prometheus counters) and to the
:class:`CostLedger` of the current context, if any, so a request, a benchmark item or a training
rollout can be billed on its own::

    with track_costs() as ledger:
        result = await agent.run("Who designed this?", image="photo.jpg")
    print(ledger.total_usd, ledger.summary())

The ledger lives in a context variable: tasks started inside the ``with`` block (the agent's
searches, the text pipeline's page reads) report to it too.
"""

from __future__ import annotations

import contextvars
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

__all__ = ["CostLedger", "Meter", "Price", "PriceTable", "ProviderCall", "current_ledger", "track_costs"]


@dataclass(frozen=True)
class Price:
    """USD per successful call and per 1,000 tokens (either may be 0)."""

    per_call: float = 0.0
    per_1k_tokens: float = 0.0

    @classmethod
    def parse(cls, value: float | Mapping[str, float] | Price) -> Price:
        """A number is a price per call; a mapping names ``per_call`` and/or ``per_1k_tokens``."""
        if isinstance(value, Price):
            return value
        if isinstance(value, (int, float)):
            return cls(per_call=float(value))
        unknown = set(value) - {"per_call", "per_1k_tokens"}
        if unknown:
            raise ValueError(f"unknown price fields {sorted(unknown)}: use per_call and per_1k_tokens")
        return cls(float(value.get("per_call", 0.0)), float(value.get("per_1k_tokens", 0.0)))


class PriceTable:
    """Prices by provider name (``serpapi``, ``serpapi-lens``, ``brave``, ``jina``, ``summarizer`` ...)."""

    def __init__(self, prices: Mapping[str, Any] | None = None) -> None:
        self.prices = {name: Price.parse(value) for name, value in (prices or {}).items()}

    def cost(self, provider: str, outcome: str, tokens: int = 0) -> float:
        price = self.prices.get(provider)
        if price is None or outcome != "ok":
            return 0.0
        return price.per_call + price.per_1k_tokens * tokens / 1000

    def __contains__(self, provider: object) -> bool:
        return provider in self.prices


@dataclass(frozen=True)
class ProviderCall:
    provider: str
    outcome: str
    tokens: int = 0
    cost_usd: float = 0.0


@dataclass
class CostLedger:
    """The provider calls made in one context (a request, a rollout)."""

    calls: list[ProviderCall] = field(default_factory=list)

    @property
    def total_usd(self) -> float:
        return sum(c.cost_usd for c in self.calls)

    def summary(self) -> dict[str, Any]:
        """``{"estimated_usd", "calls": {provider: {"calls", "failed", "tokens", "usd"}}}``."""
        by_provider: dict[str, dict[str, Any]] = {}
        for call in self.calls:
            row = by_provider.setdefault(call.provider, {"calls": 0, "failed": 0, "tokens": 0, "usd": 0.0})
            row["calls"] += 1
            row["failed"] += call.outcome != "ok"
            row["tokens"] += call.tokens
            row["usd"] += call.cost_usd
        for row in by_provider.values():
            row["usd"] = round(row["usd"], 6)
        return {"estimated_usd": round(self.total_usd, 6), "calls": by_provider}


current_ledger: contextvars.ContextVar[CostLedger | None] = contextvars.ContextVar(
    "mmsr_cost_ledger", default=None
)


@contextmanager
def track_costs() -> Iterator[CostLedger]:
    """Record the provider calls made inside the block (and the tasks it starts) in a new ledger."""
    ledger = CostLedger()
    token = current_ledger.set(ledger)
    try:
        yield ledger
    finally:
        current_ledger.reset(token)


Listener = Callable[[ProviderCall], None]


class Meter:
    """Where providers report their calls; see the module docstring."""

    def __init__(self, prices: PriceTable | Mapping[str, Any] | None = None) -> None:
        self.prices = prices if isinstance(prices, PriceTable) else PriceTable(prices)
        self._listeners: list[Listener] = []

    def subscribe(self, listener: Listener) -> None:
        self._listeners.append(listener)

    def record(self, provider: str, outcome: str, *, tokens: int = 0) -> ProviderCall:
        call = ProviderCall(provider, outcome, tokens, self.prices.cost(provider, outcome, tokens))
        ledger = current_ledger.get()
        if ledger is not None:
            ledger.calls.append(call)
        for listener in self._listeners:
            listener(call)
        return call
