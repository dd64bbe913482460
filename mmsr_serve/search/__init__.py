"""Search tools: interfaces, the embedded local index, web providers, the text pipeline, the cache
wrapper, cost metering and the safe fetcher (docs/search.md).

Everything but the interfaces is imported on first use, so ``import mmsr_serve`` stays light.
"""

import importlib
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
    from mmsr_serve.search.brave import BraveSearch
    from mmsr_serve.search.config import SearchConfig
    from mmsr_serve.search.costs import Meter, track_costs
    from mmsr_serve.search.duckduckgo import DuckDuckGoSearch
    from mmsr_serve.search.factory import SearchTools, build_search
    from mmsr_serve.search.fallback import FallbackImageSearch, FallbackTextSearch
    from mmsr_serve.search.http_provider import HttpProvider
    from mmsr_serve.search.local import LocalIndex, build_index
    from mmsr_serve.search.pipeline import TextPipeline
    from mmsr_serve.search.publish import ImagePublisher
    from mmsr_serve.search.reader import JinaReader, LocalReader
    from mmsr_serve.search.registry import PROVIDERS, Provider
    from mmsr_serve.search.searxng import SearxngSearch
    from mmsr_serve.search.serpapi import SerpApiGoogle, SerpApiLens
    from mmsr_serve.search.summarize import ExtractiveSummarizer, LLMSummarizer
    from mmsr_serve.search.tavily import TavilySearch

_LAZY = {
    "LocalIndex": "local",
    "build_index": "local",
    "BraveSearch": "brave",
    "DuckDuckGoSearch": "duckduckgo",
    "ExtractiveSummarizer": "summarize",
    "FallbackImageSearch": "fallback",
    "FallbackTextSearch": "fallback",
    "HttpProvider": "http_provider",
    "PROVIDERS": "registry",
    "Provider": "registry",
    "ImagePublisher": "publish",
    "JinaReader": "reader",
    "LLMSummarizer": "summarize",
    "LocalReader": "reader",
    "Meter": "costs",
    "SearchConfig": "config",
    "SearchTools": "factory",
    "SearxngSearch": "searxng",
    "SerpApiGoogle": "serpapi",
    "SerpApiLens": "serpapi",
    "TavilySearch": "tavily",
    "TextPipeline": "pipeline",
    "build_search": "factory",
    "track_costs": "costs",
}

__all__ = [
    "PROVIDERS",
    "BraveSearch",
    "DuckDuckGoSearch",
    "ExtractiveSummarizer",
    "FallbackImageSearch",
    "FallbackTextSearch",
    "Hit",
    "HttpProvider",
    "ImageHit",
    "ImagePublisher",
    "ImageSearchTool",
    "JinaReader",
    "LLMSummarizer",
    "LocalIndex",
    "LocalReader",
    "Meter",
    "Provider",
    "SearchConfig",
    "SearchResults",
    "SearchTools",
    "SearxngSearch",
    "SerpApiGoogle",
    "SerpApiLens",
    "TavilySearch",
    "TextHit",
    "TextPipeline",
    "TextSearchTool",
    "build_index",
    "build_search",
    "track_costs",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f"mmsr_serve.search.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
