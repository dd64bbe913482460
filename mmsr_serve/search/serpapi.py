"""SerpAPI: Google Lens (the paper's image search) and Google web search.

Both call ``GET {base_url}/search.json`` with ``engine`` and the key as ``api_key`` (SerpAPI's only
way to take it: the request URL holds the key, which is why no message here ever includes a URL
and why httpx's request log lines are redacted).

- :class:`SerpApiLens` (``engine=google_lens&url=...``) reads ``visual_matches``: each a ``title``,
  ``link`` and ``thumbnail``. Google Lens fetches the image from ``url`` itself, so the image must be
  public: an image that came as a public http(s) URL is passed as is, any other is published for the
  duration of the call by an :class:`~mmsr_serve.search.publish.ImagePublisher`; without one the
  search fails with a tool error that says so. Thumbnails are fetched through the safe fetcher.
- :class:`SerpApiGoogle` (``engine=google&q=...&num=k``) reads ``organic_results``: ``title``,
  ``link``, ``snippet``.

"Google hasn't returned any results" answers (HTTP 200 with an ``error`` field) are empty results,
not failures. ``options`` adds fixed query parameters (``hl``, ``gl``, ``country``, ``location``).
"""

from __future__ import annotations

from typing import Any

from mmsr_serve._secret import Secret
from mmsr_serve.errors import ProviderError, ProviderResponseError, SearchError
from mmsr_serve.fetch import SafeFetcher
from mmsr_serve.images import InputImage
from mmsr_serve.search.base import ImageHit, SearchResults, TextHit
from mmsr_serve.search.http_provider import HttpProvider
from mmsr_serve.search.location import location_of
from mmsr_serve.search.publish import ImagePublisher
from mmsr_serve.search.thumbnails import fetch_thumbnails, thumbnail_fetcher

__all__ = ["DEFAULT_BASE_URL", "SerpApiGoogle", "SerpApiLens"]

DEFAULT_BASE_URL = "https://serpapi.com"
KEY_ENV = "SERPAPI_API_KEY"
_NO_RESULTS = "hasn't returned any results"


class _SerpApi(HttpProvider):
    name = "serpapi"
    default_base_url = DEFAULT_BASE_URL
    key_env = KEY_ENV
    default_timeout_s = 30.0

    async def _search(self, params: dict[str, Any]) -> dict[str, Any] | None:
        """The answer's JSON, or ``None`` when Google found nothing."""
        query = {**self.options, **params, "output": "json", "api_key": self.require_key()}
        data = await self.request("GET", "/search.json", params=query)
        if not isinstance(data, dict):
            raise ProviderResponseError(self.name, "the answer is not a JSON object")
        error = data.get("error")
        if isinstance(error, str) and error:
            if _NO_RESULTS in error:
                return None
            raise ProviderError(self.name, error)
        return data


def _items(data: dict[str, Any] | None, field: str) -> list[dict[str, Any]]:
    items = (data or {}).get(field) or []
    return [item for item in items if isinstance(item, dict)] if isinstance(items, list) else []


class SerpApiGoogle(_SerpApi):
    """Google web search: the organic results' titles, links and snippets."""

    name = "serpapi"
    takes_location = True

    async def search_text(self, query: str, k: int) -> SearchResults:
        params: dict[str, Any] = {"engine": "google", "q": query, "num": k}
        where = location_of(self)
        if where is not None and where.country:
            params["gl"] = where.country.lower()  # Google's country of the results
        data = await self._search(params)
        hits = [
            TextHit(str(item.get("title") or ""), str(item["link"]), str(item.get("snippet") or ""))
            for item in _items(data, "organic_results")
            if item.get("link")
        ]
        return SearchResults(list(hits[:k]), self.name)


class SerpApiLens(_SerpApi):
    """Google Lens reverse image search: pages showing matching images, with their thumbnails."""

    name = "serpapi-lens"

    def __init__(
        self,
        api_key: str | Secret | None = None,
        *,
        publisher: ImagePublisher | None = None,
        fetcher: SafeFetcher | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(api_key, **kwargs)
        self.publisher = publisher
        self._fetcher = fetcher or thumbnail_fetcher()

    async def search_image(self, image: InputImage, k: int) -> SearchResults:
        if image.url and image.url.startswith(("http://", "https://")):
            data = await self._search({"engine": "google_lens", "url": image.url})
        elif self.publisher is not None:
            async with self.publisher.published(image) as url:
                data = await self._search({"engine": "google_lens", "url": url})
        else:
            raise SearchError(
                f"{self.name}: reverse image search needs the image at a public URL, and this server "
                "has no public base URL to publish uploaded images at (--public-base-url)"
            )
        matches = [m for m in _items(data, "visual_matches") if m.get("link")][:k]
        thumbnails = await fetch_thumbnails([m.get("thumbnail") for m in matches], self._fetcher)
        hits = [
            ImageHit(str(m.get("title") or m.get("source") or ""), str(m["link"]), thumb)
            for m, thumb in zip(matches, thumbnails, strict=True)
        ]
        return SearchResults(list(hits), self.name)
