"""Fallback chains: ``--text-search serpapi,duckduckgo`` asks the next provider when one fails.

A chain tries its tools in order and returns the first answer with hits. A tool that raises
:class:`~mmsr_serve.errors.SearchError` (down, out of quota, key refused, a replay cache miss) or
finds nothing passes the query on. If every tool failed, the chain raises one ``SearchError``
naming each failure; if some answered with no hits and none had any, the result is empty. The
answer's ``provider`` says which tool gave it.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

from mmsr_serve.errors import SearchError
from mmsr_serve.images import InputImage
from mmsr_serve.search.base import ImageSearchTool, SearchResults, TextSearchTool

__all__ = ["FallbackImageSearch", "FallbackTextSearch"]

log = logging.getLogger("mmsr.search")
ToolT = TypeVar("ToolT", ImageSearchTool, TextSearchTool)


async def _first_answer(
    tools: Sequence[ToolT], call: Callable[[ToolT], Awaitable[SearchResults]]
) -> SearchResults:
    failures: list[str] = []
    empty: SearchResults | None = None
    for position, tool in enumerate(tools):
        try:
            results = await call(tool)
        except SearchError as exc:
            failures.append(str(exc))
            if position + 1 < len(tools):
                log.info("search provider %s failed, trying %s: %s", tool.name, tools[position + 1].name, exc)
            continue
        if results.hits:
            return results
        empty = empty or results
    if empty is not None:
        return empty
    raise SearchError("every search provider failed: " + "; ".join(failures))


class FallbackTextSearch:
    def __init__(self, tools: Sequence[TextSearchTool]) -> None:
        if not tools:
            raise ValueError("a fallback chain needs at least one tool")
        self.tools = list(tools)
        self.name = ",".join(t.name for t in self.tools)

    def __repr__(self) -> str:
        return f"FallbackTextSearch({self.tools!r})"

    @property
    def takes_location(self) -> bool:
        """Whether its results depend on the user's location (mmsr_serve.search.location)."""
        return any(getattr(t, "takes_location", False) for t in self.tools)

    async def search_text(self, query: str, k: int) -> SearchResults:
        return await _first_answer(self.tools, lambda tool: tool.search_text(query, k))


class FallbackImageSearch:
    def __init__(self, tools: Sequence[ImageSearchTool]) -> None:
        if not tools:
            raise ValueError("a fallback chain needs at least one tool")
        self.tools = list(tools)
        self.name = ",".join(t.name for t in self.tools)

    def __repr__(self) -> str:
        return f"FallbackImageSearch({self.tools!r})"

    @property
    def takes_location(self) -> bool:
        """Whether its results depend on the user's location (mmsr_serve.search.location)."""
        return any(getattr(t, "takes_location", False) for t in self.tools)

    async def search_image(self, image: InputImage, k: int) -> SearchResults:
        return await _first_answer(self.tools, lambda tool: tool.search_image(image, k))
