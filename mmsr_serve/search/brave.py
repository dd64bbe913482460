"""Brave Search API: ``GET {base_url}/res/v1/web/search?q=...&count=k``, key in ``X-Subscription-Token``.

Reads ``web.results``: ``title``, ``url``, ``description`` (which may carry ``<strong>`` highlights:
tags are stripped, entities decoded). ``count`` is capped at the API's maximum of 20.
"""

from __future__ import annotations

import html
import re

from mmsr_serve.errors import ProviderResponseError
from mmsr_serve.search.base import SearchResults, TextHit
from mmsr_serve.search.http_provider import HttpProvider
from mmsr_serve.search.location import location_of

__all__ = ["DEFAULT_BASE_URL", "BraveSearch", "plain_text"]

DEFAULT_BASE_URL = "https://api.search.brave.com"
MAX_COUNT = 20
_TAG = re.compile(r"<[^>]+>")


def plain_text(fragment: str) -> str:
    """An HTML fragment (a snippet with highlights) as plain text."""
    return " ".join(html.unescape(_TAG.sub("", fragment)).split())


class BraveSearch(HttpProvider):
    name = "brave"
    default_base_url = DEFAULT_BASE_URL
    key_env = "BRAVE_API_KEY"
    takes_location = True

    async def search_text(self, query: str, k: int) -> SearchResults:
        headers = {"Accept": "application/json", "X-Subscription-Token": self.require_key()}
        params = {**self.options, "q": query, "count": min(k, MAX_COUNT)}
        where = location_of(self)
        if where is not None and where.country:
            params["country"] = where.country.upper()
        data = await self.request("GET", "/res/v1/web/search", params=params, headers=headers)
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
