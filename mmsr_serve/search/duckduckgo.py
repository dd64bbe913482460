"""DuckDuckGo through the maintained ``ddgs`` library (no key, no cost, best effort).

``ddgs`` scrapes result pages, synchronously: each search runs in a worker thread. Its
``backend`` is ``duckduckgo`` by default (``auto`` lets ddgs mix in other engines it scrapes).
Reads ``title``, ``href``, ``body``. ``ddgs`` reports "no results" as an exception; that is an
empty result here. Its rate-limit and timeout errors are retried like any provider's.

``ddgs`` ships with the ``web`` extra (``pip install 'mmsr[web]'``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from mmsr_serve.errors import ConfigError, ProviderError, ProviderRateLimited, ProviderUnavailable
from mmsr_serve.search._http import RetryPolicy, with_retries
from mmsr_serve.search.base import SearchResults, TextHit
from mmsr_serve.search.costs import Meter

__all__ = ["DuckDuckGoSearch"]

_NO_RESULTS = "No results found"


class _TextSearcher(Protocol):
    def text(self, query: str, **kwargs: Any) -> list[dict[str, Any]]: ...


def _ddgs_factory(timeout_s: float) -> Callable[[], _TextSearcher]:
    try:
        from ddgs import DDGS
    except ImportError as exc:
        raise ConfigError("the duckduckgo provider needs the ddgs package: pip install 'mmsr[web]'") from exc
    return lambda: DDGS(timeout=max(1, round(timeout_s)))


class DuckDuckGoSearch:
    name = "duckduckgo"

    def __init__(
        self,
        *,
        backend: str = "duckduckgo",
        region: str = "us-en",
        safesearch: str = "moderate",
        meter: Meter | None = None,
        timeout_s: float = 10.0,
        retry: RetryPolicy | None = None,
        client_factory: Callable[[], _TextSearcher] | None = None,
        options: Mapping[str, Any] | None = None,
        base_url: str | None = None,
    ) -> None:
        """``options`` (the registry's uniform argument) may set ``backend``, ``region``,
        ``safesearch`` and ``timeout_s``; ``base_url`` is ignored (ddgs knows its endpoints)."""
        options = dict(options or {})
        backend, region = str(options.get("backend", backend)), str(options.get("region", region))
        safesearch = str(options.get("safesearch", safesearch))
        timeout_s = float(options.get("timeout_s", timeout_s))
        self.backend, self.region, self.safesearch = backend, region, safesearch
        self.timeout_s = timeout_s
        self.meter = meter or Meter()
        self.retry = retry or RetryPolicy()
        self._factory = client_factory or _ddgs_factory(timeout_s)

    def __repr__(self) -> str:
        return f"DuckDuckGoSearch(backend={self.backend!r})"

    async def search_text(self, query: str, k: int) -> SearchResults:
        async def attempt() -> list[dict[str, Any]]:
            try:
                rows = await asyncio.wait_for(asyncio.to_thread(self._text, query, k), self.timeout_s + 5)
            except ProviderError as exc:
                self.meter.record(self.name, exc.outcome)
                raise
            except asyncio.TimeoutError:
                self.meter.record(self.name, "timeout")
                raise ProviderUnavailable(self.name, "no answer in time", outcome="timeout") from None
            self.meter.record(self.name, "ok")
            return rows

        rows = await with_retries(self.retry, attempt)
        hits = [
            TextHit(str(r.get("title") or ""), str(r["href"]), str(r.get("body") or ""))
            for r in rows
            if isinstance(r, dict) and r.get("href")
        ]
        return SearchResults(list(hits[:k]), self.name)

    def _text(self, query: str, k: int) -> list[dict[str, Any]]:
        """One search, in a worker thread; ddgs's exceptions become ours."""
        from ddgs.exceptions import DDGSException, RatelimitException, TimeoutException

        try:
            return self._factory().text(
                query, max_results=k, backend=self.backend, region=self.region, safesearch=self.safesearch
            )
        except RatelimitException as exc:
            raise ProviderRateLimited(self.name, "rate limited by the search engine") from exc
        except TimeoutException as exc:
            raise ProviderUnavailable(self.name, "no answer in time", outcome="timeout") from exc
        except DDGSException as exc:
            if str(exc).startswith(_NO_RESULTS):
                return []
            raise ProviderUnavailable(self.name, f"search failed: {exc}", outcome="connection_error") from exc
