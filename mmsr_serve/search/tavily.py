"""Tavily: ``POST {base_url}/search`` with ``{"query", "max_results", ...}``, key as a Bearer token.

Reads ``results``: ``title``, ``url``, ``content`` (already a query-focused extract) and ``score``.
``search_depth`` is ``basic`` (1 credit) unless ``options`` say otherwise; ``max_results`` is capped
at the API's maximum of 20.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import httpx

from mmsr_serve.errors import SearchError
from mmsr_serve.search._http import ApiClient, ProviderResponseError, RetryPolicy
from mmsr_serve.search._secret import Secret
from mmsr_serve.search.base import SearchResults, TextHit
from mmsr_serve.search.costs import Meter

__all__ = ["DEFAULT_BASE_URL", "TavilySearch"]

DEFAULT_BASE_URL = "https://api.tavily.com"
MAX_RESULTS = 20


class TavilySearch:
    name = "tavily"

    def __init__(
        self,
        api_key: str | Secret | None,
        *,
        base_url: str | None = None,
        options: Mapping[str, Any] | None = None,
        meter: Meter | None = None,
        timeout_s: float = 20.0,
        retry: RetryPolicy | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._key = api_key if isinstance(api_key, Secret) else Secret(api_key or "")
        self._options = {"search_depth": "basic", **(options or {})}
        self._api = ApiClient(
            self.name, base_url or DEFAULT_BASE_URL, meter=meter, timeout_s=timeout_s, retry=retry,
            transport=transport,
        )  # fmt: skip

    def __repr__(self) -> str:
        return f"TavilySearch(base_url={self._api.base_url!r})"

    async def search_text(self, query: str, k: int) -> SearchResults:
        if not self._key:
            raise SearchError(f"{self.name}: no API key configured (set TAVILY_API_KEY)")
        body = {
            **self._options,
            "query": query,
            "max_results": min(k, MAX_RESULTS),
            "include_answer": False,
            "include_raw_content": False,
            "include_images": False,
        }
        headers = {"Authorization": f"Bearer {self._key.reveal()}"}
        data = await self._api.request("POST", "/search", json_body=body, headers=headers)
        if not isinstance(data, dict) or not isinstance(data.get("results", []), list):
            raise ProviderResponseError(self.name, "the answer has no list of results")
        hits = [
            TextHit(str(r.get("title") or ""), str(r["url"]), str(r.get("content") or ""), _score(r))
            for r in data.get("results", [])
            if isinstance(r, dict) and r.get("url")
        ]
        return SearchResults(list(hits[:k]), self.name)

    async def aclose(self) -> None:
        await self._api.aclose()


def _score(result: dict[str, Any]) -> float | None:
    score = result.get("score")
    return float(score) if isinstance(score, (int, float)) else None
