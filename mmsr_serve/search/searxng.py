"""SearXNG (self-hosted metasearch): ``GET {base_url}/search?q=...&format=json``.

The instance must allow the JSON format (``search.formats: [html, json]`` in its ``settings.yml``);
otherwise it answers 403, reported as such. Reads ``results``: ``title``, ``url``, ``content``,
``score``. SearXNG has no result count parameter: the first page is cut to ``k``. ``params`` adds
fixed query parameters (``language``, ``categories``, ``engines``, ``safesearch``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import httpx

from mmsr_serve.search._http import ApiClient, ProviderResponseError, RetryPolicy
from mmsr_serve.search.base import SearchResults, TextHit
from mmsr_serve.search.brave import plain_text
from mmsr_serve.search.costs import Meter

__all__ = ["SearxngSearch"]

_HINTS = {403: "is the json format enabled in the instance's settings.yml search.formats?"}


class SearxngSearch:
    name = "searxng"

    def __init__(
        self,
        base_url: str,
        *,
        params: Mapping[str, str] | None = None,
        meter: Meter | None = None,
        timeout_s: float = 15.0,
        retry: RetryPolicy | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._params = dict(params or {})
        self._api = ApiClient(
            self.name, base_url, meter=meter, timeout_s=timeout_s, retry=retry, transport=transport,
            status_hints=_HINTS,
        )  # fmt: skip

    def __repr__(self) -> str:
        return f"SearxngSearch(base_url={self._api.base_url!r})"

    async def search_text(self, query: str, k: int) -> SearchResults:
        params = {**self._params, "q": query, "format": "json", "pageno": 1}
        data = await self._api.request(
            "GET", "/search", params=params, headers={"Accept": "application/json"}
        )
        if not isinstance(data, dict) or not isinstance(data.get("results", []), list):
            raise ProviderResponseError(self.name, "the answer has no list of results")
        hits = [
            TextHit(
                plain_text(str(r.get("title") or "")),
                str(r["url"]),
                plain_text(str(r.get("content") or "")),
                _score(r),
            )
            for r in data.get("results", [])
            if isinstance(r, dict) and r.get("url")
        ]
        return SearchResults(list(hits[:k]), self.name)

    async def aclose(self) -> None:
        await self._api.aclose()


def _score(result: dict[str, Any]) -> float | None:
    score = result.get("score")
    return float(score) if isinstance(score, (int, float)) else None
