"""SearXNG (self-hosted metasearch): ``GET {base_url}/search?q=...&format=json``.

The instance must allow the JSON format (``search.formats: [html, json]`` in its ``settings.yml``);
otherwise it answers 403, reported as such. Reads ``results``: ``title``, ``url``, ``content``,
``score``. SearXNG has no result count parameter: the first page is cut to ``k``. ``options`` adds
fixed query parameters (``language``, ``categories``, ``engines``, ``safesearch``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from mmsr_serve.errors import ProviderResponseError
from mmsr_serve.search.base import SearchResults, TextHit
from mmsr_serve.search.brave import plain_text
from mmsr_serve.search.http_provider import HttpProvider, score_of

__all__ = ["SearxngSearch"]


class SearxngSearch(HttpProvider):
    name = "searxng"
    status_hints: ClassVar[Mapping[int, str]] = {
        403: "is the json format enabled in the instance's settings.yml search.formats?"
    }

    def __init__(self, base_url: str | None = None, **kwargs: Any) -> None:
        """``SearxngSearch(url, options=..., ...)``: the instance's URL and no key."""
        super().__init__(None, base_url=base_url, **kwargs)

    async def search_text(self, query: str, k: int) -> SearchResults:
        params = {**self.options, "q": query, "format": "json", "pageno": 1}
        data = await self.request("GET", "/search", params=params, headers={"Accept": "application/json"})
        if not isinstance(data, dict) or not isinstance(data.get("results", []), list):
            raise ProviderResponseError(self.name, "the answer has no list of results")
        hits = [
            TextHit(
                plain_text(str(r.get("title") or "")),
                str(r["url"]),
                plain_text(str(r.get("content") or "")),
                score_of(r),
            )
            for r in data.get("results", [])
            if isinstance(r, dict) and r.get("url")
        ]
        return SearchResults(list(hits[:k]), self.name)
