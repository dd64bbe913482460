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
from mmsr_serve.fetch import is_public_address
from mmsr_serve.search.base import ImageSearchTool, TextSearchTool
from mmsr_serve.search.cache import SearchCache, cached
from mmsr_serve.search.config import SearchConfig, choices
from mmsr_serve.search.costs import Meter
from mmsr_serve.search.fallback import FallbackImageSearch, FallbackTextSearch
from mmsr_serve.search.local import LocalIndex
from mmsr_serve.search.publish import ImagePublisher
from mmsr_serve.search.reader import LocalReader, PageReader
from mmsr_serve.search.registry import PROVIDERS, Provider
from mmsr_serve.search.summarize import ExtractiveSummarizer, LLMSummarizer, Summarizer
from mmsr_serve.search.thumbnails import thumbnail_fetcher

__all__ = ["SearchTools", "build_search"]


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

    def warm(self) -> None:
        """Load what the first search would otherwise load (the local index, the image hashing,
        the page reader's extractor). Blocking: run it in a thread at start-up."""
        if self.local is not None:
            self.local.ensure_index()
        for item in self.closing:
            warm = getattr(item, "warm", None)
            if callable(warm):
                warm()

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
            ImagePublisher(
                config.public_base_url, ttl_s=config.public_image_ttl_s, directory=config.public_image_dir
            )
            if config.public_base_url
            else None
        )
        self._reader: PageReader | None = None
        self._summarizer: Summarizer | None = None

    def build(self) -> SearchTools:
        for name in self.cfg.image:
            _check(name, choices("image"), "image")
        for name in self.cfg.text:
            _check(name, choices("text"), "text")
        _check(self.cfg.reader, choices("reader"), "page reader")
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

    def _key(self, spec: Provider) -> str | None:
        key = self.cfg.provider(spec.name).api_key
        if spec.key != "required" or key:
            return key
        if self.cfg.cache_mode != "replay":
            raise ConfigError(
                f"the {spec.name} search provider needs an API key: set {spec.key_env}"
                f" (or providers.{spec.config_section}.api_key in the config file)"
            )
        self.warnings.append(f"{spec.name}: no API key; only searches recorded in the cache can be answered")
        return None

    def _provider(self, name: str, **extra: Any) -> Any:
        """A registered web provider (:mod:`~mmsr_serve.search.registry`), built the one way all are."""
        spec = PROVIDERS[name]
        section = self.cfg.provider(name)
        if spec.base_url_required and not section.base_url:
            raise ConfigError(f"the {name} search provider needs its instance's URL: set {spec.base_url_env}")
        if spec.options is not None and (unknown := set(section.options) - spec.options):
            raise ConfigError(f"unknown {name} options {sorted(unknown)}: choose from {sorted(spec.options)}")
        kwargs: dict[str, Any] = {"base_url": section.base_url, "options": section.options}
        if spec.key != "none":
            kwargs["api_key"] = self._key(spec)
        tool = spec.load()(meter=self.meter, retry=self.cfg.retry, **kwargs, **extra)
        self.closing.append(tool)
        return tool

    def _image_tool(self, name: str) -> Any:
        if name == "local":
            return self._wrap(self._local_index())
        fetcher = thumbnail_fetcher(self.cfg.fetch_allow, keepalive=True)
        self.closing.append(fetcher)
        return self._wrap(self._provider(name, publisher=self.publisher, fetcher=fetcher))

    def _text_tool(self, name: str) -> Any:
        if name == "local":
            return self._wrap(self._local_index())
        from mmsr_serve.search.pipeline import TextPipeline

        search = self._wrap(self._provider(name))
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
            if self.cfg.reader != "local":
                self._reader = self._provider(self.cfg.reader)
            else:
                self._reader = LocalReader(allow=self.cfg.fetch_allow, timeout_s=self.cfg.read_timeout_s)
                self.closing.append(self._reader)  # warmed at start-up, closed with the tools
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
    unpriced = [name for name in config.web_providers if PROVIDERS[name].paid and name not in config.prices]
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
