"""A persistent cache around any search provider: pay for a web search once, replay it forever.

:func:`cached` wraps a provider and returns a wrapper with the same tools (a provider with only
image search gets a :class:`CachedImageSearch`, text only a :class:`CachedTextSearch`, both a
:class:`CachedSearch`), so ``isinstance(wrapper, TextSearchTool)`` stays truthful::

    tools = cached(LocalIndex("corpus/"), "search-cache.sqlite", mode="readwrite")

The key is the provider's ``name``, the kind (``image``/``text``), the query and ``k``. A text
query is normalized (Unicode NFKC, casefolded, whitespace collapsed); an image is keyed by the
sha256 of its bytes, never by its URL (one URL may serve different images, and one image many
URLs). Results are stored as JSON (thumbnails base64) in SQLite, in rollback-journal mode so the
file may sit on storage shared by several gateways. Hits served from the cache come back with
``SearchResults.cached=True``.

Modes: ``readwrite`` serves hits and records misses; ``replay`` serves only what was recorded
and raises :class:`~mmsr_serve.errors.CacheMissError` otherwise, never calling the provider
(reproducible benchmarks and training runs); ``refresh`` always calls the provider and overwrites.

Identical concurrent calls share one provider call (single flight). The shared call runs in its
own task, so a caller that gives up (a client disconnecting) does not cancel it for the others,
and its result is still recorded. Failed provider calls are never recorded.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import sqlite3
from collections.abc import Awaitable, Callable
from typing import Literal, Protocol, overload

from mmsr_serve.errors import CacheMissError
from mmsr_serve.images import InputImage
from mmsr_serve.search._cache_store import (
    CacheEntry,
    CacheStats,
    Kind,
    SearchCache,
    cache_key,
    normalize_query,
)
from mmsr_serve.search.base import ImageSearchTool, SearchResults, TextSearchTool
from mmsr_serve.search.location import location_of

__all__ = [
    "CacheEntry",
    "CacheStats",
    "CachedImageSearch",
    "CachedSearch",
    "CachedTextSearch",
    "Mode",
    "SearchCache",
    "cache_key",
    "cached",
    "normalize_query",
]

Mode = Literal["readwrite", "replay", "refresh"]
CacheAt = str | os.PathLike[str] | SearchCache  # a file path, or a store shared between wrappers
_MODES = ("readwrite", "replay", "refresh")
logger = logging.getLogger(__name__)


class _Named(Protocol):
    name: str


class _CachedBase:
    def __init__(self, provider: _Named, path: CacheAt, *, mode: Mode = "readwrite") -> None:
        if mode not in _MODES:
            raise ValueError(f"mode must be one of {_MODES}, got {mode!r}")
        self.name = provider.name
        self._provider = provider
        self.mode = mode
        self._owns_cache = not isinstance(path, SearchCache)
        self.cache = path if isinstance(path, SearchCache) else SearchCache(path)
        self._inflight: dict[str, asyncio.Task[SearchResults]] = {}
        self._counts = {"hits": 0, "misses": 0, "provider_calls": 0, "errors": 0, "joined": 0}

    @property
    def takes_location(self) -> bool:
        """Whether its results depend on the user's location (mmsr_serve.search.location)."""
        return bool(getattr(self._provider, "takes_location", False))

    async def _lookup(
        self, kind: Kind, query: str, k: int, call: Callable[[], Awaitable[SearchResults]]
    ) -> SearchResults:
        if k < 1:
            raise ValueError(f"k must be at least 1, got {k}")
        where = location_of(self)  # takes_location: the wrapped provider's
        if where is not None and where.country:  # a localised answer is kept apart (and exported so)
            query = f"{query} [country={where.country.upper()}]"
        key = cache_key(self.name, kind, query, k)
        task = self._inflight.get(key)
        if task is not None and task.get_loop() is asyncio.get_running_loop():
            self._counts["joined"] += 1
        else:
            task = asyncio.ensure_future(self._resolve(key, kind, query, k, call))
            self._inflight[key] = task
            task.add_done_callback(functools.partial(self._forget, key))
        return await asyncio.shield(task)

    def _forget(self, key: str, task: asyncio.Task[SearchResults]) -> None:
        if self._inflight.get(key) is task:
            del self._inflight[key]

    async def _resolve(
        self, key: str, kind: Kind, query: str, k: int, call: Callable[[], Awaitable[SearchResults]]
    ) -> SearchResults:
        if self.mode != "refresh":
            stored = await asyncio.to_thread(self.cache.get, key)
            if stored is not None:
                self._counts["hits"] += 1
                return stored
            self._counts["misses"] += 1
        if self.mode == "replay":
            raise CacheMissError(f"no recorded {kind} search result for this query (k={k}) from {self.name}")
        self._counts["provider_calls"] += 1
        try:
            results = await call()
        except Exception:
            self._counts["errors"] += 1
            raise
        try:
            await asyncio.to_thread(self.cache.put, self.name, kind, query, k, results)
        except sqlite3.Error as exc:  # the search succeeded: return it even if it cannot be kept
            logger.warning("could not record a %s search in %s: %s", kind, self.cache.path, exc)
        return results

    def stats(self) -> CacheStats:
        base = self.cache.stats()
        return CacheStats(base.entries, base.by_provider, **self._counts)

    def entries(self) -> list[CacheEntry]:
        return self.cache.entries()

    def export_jsonl(self, path: str | os.PathLike[str]) -> int:
        return self.cache.export_jsonl(path)

    def import_jsonl(self, path: str | os.PathLike[str]) -> int:
        return self.cache.import_jsonl(path)

    def close(self) -> None:
        """Close the cache file, unless it was passed in as a shared :class:`SearchCache`."""
        if self._owns_cache:
            self.cache.close()


class CachedImageSearch(_CachedBase):
    def __init__(self, provider: ImageSearchTool, path: CacheAt, *, mode: Mode = "readwrite") -> None:
        self._image_tool = provider
        super().__init__(provider, path, mode=mode)

    async def search_image(self, image: InputImage, k: int = 5) -> SearchResults:
        return await self._lookup(
            "image", f"sha256:{image.sha256}", k, lambda: self._image_tool.search_image(image, k)
        )


class CachedTextSearch(_CachedBase):
    def __init__(self, provider: TextSearchTool, path: CacheAt, *, mode: Mode = "readwrite") -> None:
        self._text_tool = provider
        super().__init__(provider, path, mode=mode)

    async def search_text(self, query: str, k: int = 5) -> SearchResults:
        # the provider gets the query as written; only the key is normalized
        return await self._lookup(
            "text", normalize_query(query), k, lambda: self._text_tool.search_text(query, k)
        )


class _BothTools(ImageSearchTool, TextSearchTool, Protocol):
    pass


class CachedSearch(CachedImageSearch, CachedTextSearch):
    """The cache around a provider that has both tools (like :class:`~.local.LocalIndex`)."""

    def __init__(self, provider: _BothTools, path: CacheAt, *, mode: Mode = "readwrite") -> None:
        super().__init__(provider, path, mode=mode)


@overload
def cached(provider: _BothTools, path: CacheAt, *, mode: Mode = ...) -> CachedSearch: ...
@overload
def cached(provider: ImageSearchTool, path: CacheAt, *, mode: Mode = ...) -> CachedImageSearch: ...
@overload
def cached(provider: TextSearchTool, path: CacheAt, *, mode: Mode = ...) -> CachedTextSearch: ...
def cached(
    provider: ImageSearchTool | TextSearchTool, path: CacheAt, *, mode: Mode = "readwrite"
) -> CachedImageSearch | CachedTextSearch:
    """Wrap ``provider`` in the cache at ``path``, keeping exactly the tools it has."""
    has_image, has_text = isinstance(provider, ImageSearchTool), isinstance(provider, TextSearchTool)
    if has_image and has_text:
        return CachedSearch(provider, path, mode=mode)  # type: ignore[arg-type]
    if has_image:
        return CachedImageSearch(provider, path, mode=mode)  # type: ignore[arg-type]
    if has_text:
        return CachedTextSearch(provider, path, mode=mode)  # type: ignore[arg-type]
    raise TypeError(f"{provider!r} has neither search_image nor search_text")
