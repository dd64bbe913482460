"""Search tools: interfaces, the embedded local index, the cache wrapper and the safe fetcher."""

from typing import TYPE_CHECKING, Any

from mmsr_serve.search.base import (
    Hit,
    ImageHit,
    ImageSearchTool,
    SearchResults,
    TextHit,
    TextSearchTool,
)

if TYPE_CHECKING:
    from mmsr_serve.search.local import LocalIndex, build_index

__all__ = [
    "Hit",
    "ImageHit",
    "ImageSearchTool",
    "LocalIndex",
    "SearchResults",
    "TextHit",
    "TextSearchTool",
    "build_index",
]


def __getattr__(name: str) -> Any:
    if name in ("LocalIndex", "build_index"):
        from mmsr_serve.search import local

        return getattr(local, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
