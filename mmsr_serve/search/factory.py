"""Building the search tools a :class:`~mmsr_serve.search.config.SearchConfig` describes.

    tools = build_search(SearchConfig(image=("serpapi-lens",), text=("serpapi", "duckduckgo"),
                                      cache=Path("cache.sqlite"), public_base_url="https://my.host"))
    agent = SearchAgent(backend, image_search=tools.image, text_search=tools.text)

How the pieces fit, for ``--text-search serpapi,duckduckgo`` with a cache::

    FallbackTextSearch[
        cached(TextPipeline(cached(SerpApiGoogle), reader, summarizer)),
        cached(TextPipeline(cached(DuckDuckGoSearch), reader, summarizer)),
    ]

Every provider goes through the cache (its raw results, so a changed reader or summarizer does
not pay for the search again), and so does every pipeline (its summaries, so a replay gives the
model exactly what it saw). Image searches are keyed by the image's content hash. All calls are
reported to one :class:`~mmsr_serve.search.costs.Meter`. A keyed provider without its key is a
:class:`~mmsr_serve.errors.ConfigError`, except in ``replay`` mode, where no provider is called.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from mmsr_serve.errors import ConfigError
from mmsr_serve.search.base import ImageSearchTool, TextSearchTool
from mmsr_serve.search.cache import SearchCache, cached
from mmsr_serve.search.config import IMAGE_PROVIDERS, READERS, TEXT_PROVIDERS, SearchConfig
from mmsr_serve.search.costs import Meter
from mmsr_serve.search.fallback import FallbackImageSearch, FallbackTextSearch
from mmsr_serve.search.fetch import is_public_address
from mmsr_serve.search.local import LocalIndex
from mmsr_serve.search.publish import ImagePublisher
from mmsr_serve.search.reader import JinaReader, LocalReader, PageReader
from mmsr_serve.search.summarize import ExtractiveSummarizer, LLMSummarizer, Summarizer
from mmsr_serve.search.thumbnails import thumbnail_fetcher

__all__ = ["SearchTools", "build_search"]

_KEY_ENV = {"serpapi": "SERPAPI_API_KEY", "brave": "BRAVE_API_KEY", "tavily": "TAVILY_API_KEY"}
_PAID = ("serpapi", "serpapi-lens", "brave", "tavily")


@dataclass
class SearchTools:
    image: ImageSearchTool | None
    text: TextSearchTool | None
    meter: Meter
    publisher: ImagePublisher | None = None
    local: LocalIndex | None = None
    warnings: list[str] = field(default_factory=list)
    """Configuration that works but probably not as intended (logged at start-up by the server)."""
    closing: list[Any] = field(default_factory=list)

    async def aclose(self) -> None:
        """Close the providers' HTTP clients, the local index and the cache file (last)."""
        for item in reversed(self.closing):
            aclose, close = getattr(item, "aclose", None), getattr(item, "close", None)
            if aclose is not None:
                await aclose()
            elif close is not None:
                close()


def build_search(config: SearchConfig, *, meter: Meter | None = None) -> SearchTools:
    return _Builder(config, meter or Meter(config.prices)).build()


class _Builder:
    def __init__(self, config: SearchConfig, meter: Meter) -> None:
        self.cfg, self.meter = config, meter
        self.closing: list[Any] = []
        self.warnings: list[str] = []
        self.cache: SearchCache | None = None
        self.local: LocalIndex | None = None
        self.publisher = (
            ImagePublisher(config.public_base_url, ttl_s=config.public_image_ttl_s)
            if config.public_base_url
            else None
        )
        self._reader: PageReader | None = None
        self._summarizer: Summarizer | None = None

    def build(self) -> SearchTools:
        for name in self.cfg.image:
            _check(name, IMAGE_PROVIDERS, "image")
        for name in self.cfg.text:
            _check(name, TEXT_PROVIDERS, "text")
        _check(self.cfg.reader, READERS, "page reader")
        images = [self._image_tool(name) for name in self.cfg.image]
        texts = [self._text_tool(name) for name in self.cfg.text]
        image = images[0] if len(images) == 1 else FallbackImageSearch(images) if images else None
        text = texts[0] if len(texts) == 1 else FallbackTextSearch(texts) if texts else None
        self.warnings += startup_warnings(self.cfg, summarizer=self._summarizer)
        return SearchTools(image, text, self.meter, self.publisher, self.local, self.warnings, self.closing)

    def _wrap(self, tool: Any) -> Any:
        if self.cfg.cache is None:
            return tool
        if self.cache is None:  # opened on first use, closed last
            self.cache = SearchCache(self.cfg.cache)
            self.closing.insert(0, self.cache)
        return cached(tool, self.cache, mode=self.cfg.cache_mode)

    def _local_index(self) -> LocalIndex:
        if self.local is None:
            if self.cfg.index is None:
                raise ConfigError("the local search provider needs a corpus folder (--index)")
            self.local = LocalIndex(
                self.cfg.index, self.cfg.index_path, min_relative_score=self.cfg.index_min_score
            )
            self.closing.append(self.local)
        return self.local

    def _key(self, name: str) -> str | None:
        key = self.cfg.provider(name).api_key
        if not key and self.cfg.cache_mode != "replay":
            section = "serpapi" if name == "serpapi-lens" else name
            raise ConfigError(
                f"the {name} search provider needs an API key: set {_KEY_ENV[section]}"
                f" (or providers.{section}.api_key in the config file)"
            )
        if not key:
            self.warnings.append(f"{name}: no API key; only searches recorded in the cache can be answered")
        return key

    def _kwargs(self, name: str) -> dict[str, Any]:
        return {"base_url": self.cfg.provider(name).base_url, "meter": self.meter, "retry": self.cfg.retry}

    def _image_tool(self, name: str) -> Any:
        if name == "local":
            return self._wrap(self._local_index())
        from mmsr_serve.search.serpapi import SerpApiLens

        lens = SerpApiLens(
            self._key(name),
            publisher=self.publisher,
            fetcher=thumbnail_fetcher(self.cfg.fetch_allow),
            params=self.cfg.provider(name).options,
            **self._kwargs(name),
        )
        self.closing.append(lens)
        return self._wrap(lens)

    def _web_text(self, name: str) -> Any:
        options = self.cfg.provider(name).options
        tool: Any
        if name == "serpapi":
            from mmsr_serve.search.serpapi import SerpApiGoogle

            tool = SerpApiGoogle(self._key(name), params=options, **self._kwargs(name))
        elif name == "brave":
            from mmsr_serve.search.brave import BraveSearch

            tool = BraveSearch(self._key(name), params=options, **self._kwargs(name))
        elif name == "tavily":
            from mmsr_serve.search.tavily import TavilySearch

            tool = TavilySearch(self._key(name), options=options, **self._kwargs(name))
        elif name == "searxng":
            from mmsr_serve.search.searxng import SearxngSearch

            base_url = self.cfg.provider(name).base_url
            if not base_url:
                raise ConfigError(
                    "the searxng search provider needs its instance's URL: set SEARXNG_BASE_URL"
                )
            tool = SearxngSearch(base_url, params=options, meter=self.meter, retry=self.cfg.retry)
        else:
            from mmsr_serve.search.duckduckgo import DuckDuckGoSearch

            unknown = set(options) - {"backend", "region", "safesearch", "timeout_s"}
            if unknown:
                raise ConfigError(f"unknown duckduckgo options {sorted(unknown)}")
            tool = DuckDuckGoSearch(meter=self.meter, retry=self.cfg.retry, **dict(options))
        self.closing.append(tool)
        return tool

    def _text_tool(self, name: str) -> Any:
        if name == "local":
            return self._wrap(self._local_index())
        from mmsr_serve.search.pipeline import TextPipeline

        search = self._wrap(self._web_text(name))
        if self.cfg.reader == "none":
            return search
        cfg = self.cfg
        pipeline = TextPipeline(
            search,
            self._page_reader(),
            self._summarize(),
            search_timeout_s=cfg.search_timeout_s,
            read_timeout_s=cfg.read_timeout_s,
            summarize_timeout_s=cfg.summarize_timeout_s,
            deadline_s=cfg.deadline_s,
            concurrency=cfg.concurrency,
        )
        return self._wrap(pipeline)

    def _page_reader(self) -> PageReader:
        if self._reader is None:
            if self.cfg.reader == "jina":
                section = self.cfg.provider("jina")
                self._reader = JinaReader(section.api_key, **self._kwargs("jina"))
                self.closing.append(self._reader)
            else:
                self._reader = LocalReader(allow=self.cfg.fetch_allow, timeout_s=self.cfg.read_timeout_s)
        return self._reader

    def _summarize(self) -> Summarizer:
        if self._summarizer is None:
            cfg = self.cfg
            if cfg.summarizer_base_url and cfg.summarizer_model:
                self._summarizer = LLMSummarizer(
                    cfg.summarizer_base_url,
                    cfg.summarizer_model,
                    api_key=cfg.summarizer_api_key,
                    meter=self.meter,
                    timeout_s=cfg.summarize_timeout_s,
                    retry=cfg.retry,
                )
                self.closing.append(self._summarizer)
            elif cfg.summarizer_base_url or cfg.summarizer_model:
                raise ConfigError("a summarizer needs both --summarizer-base-url and --summarizer-model")
            else:
                self._summarizer = ExtractiveSummarizer()
        return self._summarizer


def _check(name: str, known: tuple[str, ...], what: str) -> None:
    if name not in known:
        raise ConfigError(f"unknown {what} provider {name!r}: choose from {', '.join(known)}")


def startup_warnings(config: SearchConfig, *, summarizer: Summarizer | None = None) -> list[str]:
    """What in ``config`` works, but probably not as the operator meant."""
    out: list[str] = []
    if "serpapi-lens" in config.image and not config.public_base_url:
        out.append(
            "serpapi-lens without --public-base-url: only images sent as public http(s) URLs can be"
            " searched; uploaded images (data: URLs) get a tool error the model sees"
        )
    if config.public_base_url and not _reachable_from_internet(config.public_base_url):
        out.append(
            f"the public base URL {config.public_base_url} is not a public address: a reverse image"
            " search API cannot fetch the images published there"
        )
    if config.web_providers and config.cache is None:
        out.append("web search without a cache: every repeated search is paid for again")
    if isinstance(summarizer, ExtractiveSummarizer) and config.reader != "none":
        out.append(
            "no summarizer model (--summarizer-base-url, --summarizer-model): web pages are"
            " summarized by extracting their best passages (BM25)"
        )
    unpriced = [name for name in config.web_providers if name in _PAID and name not in config.prices]
    if config.prices and unpriced:
        out.append(f"no price for {', '.join(unpriced)}: cost estimates count their calls as $0")
    return out


def _reachable_from_internet(url: str) -> bool:
    host = (urlsplit(url).hostname or "").rstrip(".").lower()
    if host in ("localhost", "") or host.endswith((".localhost", ".local", ".internal")):
        return False
    try:
        return is_public_address(ipaddress.ip_address(host))
    except ValueError:
        return True  # a name: it may well resolve to a public address
