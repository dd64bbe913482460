"""Metering provider calls, prices, and the per-context cost ledger."""

from __future__ import annotations

import asyncio

import pytest

from mmsr_serve.search.costs import (
    CostLedger,
    Meter,
    Price,
    PriceTable,
    ProviderCall,
    current_ledger,
    track_costs,
)


def test_prices_per_call_and_per_token() -> None:
    table = PriceTable({"serpapi": 0.015, "summarizer": {"per_1k_tokens": 0.002}, "jina": {"per_call": 0.0}})
    assert table.cost("serpapi", "ok") == 0.015
    assert table.cost("serpapi", "rate_limited") == 0.0  # failed calls are not billed
    assert table.cost("summarizer", "ok", tokens=1500) == pytest.approx(0.003)
    assert table.cost("brave", "ok") == 0.0 and "brave" not in table
    assert Price.parse(0.5) == Price(per_call=0.5)
    with pytest.raises(ValueError, match="per_call and per_1k_tokens"):
        Price.parse({"per_search": 1.0})


async def test_each_context_has_its_own_ledger_and_tasks_inherit_it() -> None:
    meter = Meter({"serpapi": 0.01, "summarizer": {"per_1k_tokens": 0.001}})
    heard: list[ProviderCall] = []
    meter.subscribe(heard.append)

    async def request(n: int) -> CostLedger:
        with track_costs() as ledger:

            async def search() -> None:
                await asyncio.sleep(0)
                meter.record("serpapi", "ok")
                meter.record("summarizer", "ok", tokens=1000)

            await asyncio.gather(*(asyncio.create_task(search()) for _ in range(n)))
            meter.record("serpapi", "timeout")
        return ledger

    first, second = await asyncio.gather(request(1), request(3))
    assert first.total_usd == pytest.approx(0.011) and second.total_usd == pytest.approx(0.033)
    assert second.summary() == {
        "estimated_usd": 0.033,
        "calls": {
            "serpapi": {"calls": 4, "failed": 1, "tokens": 0, "usd": 0.03},
            "summarizer": {"calls": 3, "failed": 0, "tokens": 3000, "usd": 0.003},
        },
    }
    assert len(heard) == 10  # every call reaches the listeners
    assert current_ledger.get() is None
    meter.record("serpapi", "ok")  # outside any ledger: only the listeners hear it
    assert len(heard) == 11
