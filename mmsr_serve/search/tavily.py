"""Tavily: ``POST {base_url}/search`` with ``{"query", "max_results", ...}``, key as a Bearer token.

Reads ``results``: ``title``, ``url``, ``content`` (already a query-focused extract) and ``score``.
``search_depth`` is ``basic`` (1 credit) unless ``options`` say otherwise; ``max_results`` is capped
at the API's maximum of 20.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from mmsr_serve.errors import ProviderResponseError
from mmsr_serve.search.base import SearchResults, TextHit
from mmsr_serve.search.http_provider import HttpProvider, score_of

__all__ = ["DEFAULT_BASE_URL", "TavilySearch"]

DEFAULT_BASE_URL = "https://api.tavily.com"
MAX_RESULTS = 20


class TavilySearch(HttpProvider):
    name = "tavily"
    default_base_url = DEFAULT_BASE_URL
    key_env = "TAVILY_API_KEY"
    default_options: ClassVar[Mapping[str, Any]] = {"search_depth": "basic"}
    default_timeout_s = 20.0

    async def search_text(self, query: str, k: int) -> SearchResults:
        key = self.require_key()
        body = {
            **self.options,
            "query": query,
            "max_results": min(k, MAX_RESULTS),
            "include_answer": False,
            "include_raw_content": False,
            "include_images": False,
        }
        data = await self.request(
            "POST", "/search", json_body=body, headers={"Authorization": f"Bearer {key}"}
        )
        if not isinstance(data, dict) or not isinstance(data.get("results", []), list):
            raise ProviderResponseError(self.name, "the answer has no list of results")
        hits = [
            TextHit(str(r.get("title") or ""), str(r["url"]), str(r.get("content") or ""), score_of(r))
            for r in data.get("results", [])
            if isinstance(r, dict) and r.get("url")
        ]
        return SearchResults(list(hits[:k]), self.name)
