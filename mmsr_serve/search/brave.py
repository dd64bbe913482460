"""Brave Search API: ``GET {base_url}/res/v1/web/search?q=...&count=k``, key in ``X-Subscription-Token``.

Reads ``web.results``: ``title``, ``url``, ``description`` (which may carry ``<strong>`` highlights:
tags are stripped, entities decoded). ``count`` is capped at the API's maximum of 20.
"""

from __future__ import annotations

import html
import re
from collections.abc import Mapping

import httpx

from mmsr_serve.errors import SearchError
from mmsr_serve.search._http import ApiClient, ProviderResponseError, RetryPolicy
from mmsr_serve.search._secret import Secret
from mmsr_serve.search.base import SearchResults, TextHit
from mmsr_serve.search.costs import Meter

__all__ = ["DEFAULT_BASE_URL", "BraveSearch", "plain_text"]

DEFAULT_BASE_URL = "https://api.search.brave.com"
MAX_COUNT = 20
_TAG = re.compile(r"<[^>]+>")


def plain_text(fragment: str) -> str:
    """An HTML fragment (a snippet with highlights) as plain text."""
    return " ".join(html.unescape(_TAG.sub("", fragment)).split())


class BraveSearch:
    name = "brave"

    def __init__(
        self,
        api_key: str | Secret | None,
        *,
        base_url: str | None = None,
        params: Mapping[str, str] | None = None,
        meter: Meter | None = None,
        timeout_s: float = 15.0,
        retry: RetryPolicy | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._key = api_key if isinstance(api_key, Secret) else Secret(api_key or "")
        self._params = dict(params or {})
        self._api = ApiClient(
            self.name, base_url or DEFAULT_BASE_URL, meter=meter, timeout_s=timeout_s, retry=retry,
            transport=transport,
        )  # fmt: skip

    def __repr__(self) -> str:
        return f"BraveSearch(base_url={self._api.base_url!r})"

    async def search_text(self, query: str, k: int) -> SearchResults:
        if not self._key:
            raise SearchError(f"{self.name}: no API key configured (set BRAVE_API_KEY)")
        headers = {"Accept": "application/json", "X-Subscription-Token": self._key.reveal()}
        params = {**self._params, "q": query, "count": min(k, MAX_COUNT)}
        data = await self._api.request("GET", "/res/v1/web/search", params=params, headers=headers)
        if not isinstance(data, dict):
            raise ProviderResponseError(self.name, "the answer is not a JSON object")
        web = data.get("web") or {}
        results = web.get("results") if isinstance(web, dict) else None
        hits = [
            TextHit(
                plain_text(str(r.get("title") or "")),
                str(r["url"]),
                plain_text(str(r.get("description") or "")),
            )
            for r in (results if isinstance(results, list) else [])
            if isinstance(r, dict) and r.get("url")
        ]
        return SearchResults(list(hits[:k]), self.name)

    async def aclose(self) -> None:
        await self._api.aclose()
