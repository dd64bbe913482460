"""Search configuration: which providers, their keys and base URLs, the pipeline's limits.

Provider sections, each with an ``api_key``, a ``base_url`` and ``options``, come from the config
file's ``providers:`` mapping and from environment variables named after the provider, which win
(the providers and their sections are those of :mod:`mmsr_serve.search.registry`):

=============  ======================  ======================  ==========================================
section        key                     base URL                used by
=============  ======================  ======================  ==========================================
``serpapi``    ``SERPAPI_API_KEY``     ``SERPAPI_BASE_URL``    ``serpapi`` (text), ``serpapi-lens`` (image)
``brave``      ``BRAVE_API_KEY``       ``BRAVE_BASE_URL``      ``brave``
``tavily``     ``TAVILY_API_KEY``      ``TAVILY_BASE_URL``     ``tavily``
``searxng``    (none)                  ``SEARXNG_BASE_URL``    ``searxng`` (required)
``jina``       ``JINA_API_KEY``        ``JINA_BASE_URL``       the ``jina`` page reader (key optional)
``duckduckgo`` (none)                  (none)                  ``duckduckgo`` (options only)
=============  ======================  ======================  ==========================================

See docs/search.md for every setting and what each provider costs.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from mmsr_serve.search._http import RetryPolicy
from mmsr_serve.search._text_index import DEFAULT_MIN_RELATIVE_SCORE
from mmsr_serve.search.registry import PROVIDERS, Role, names_of, sections

__all__ = [
    "DEFAULT_MIN_RELATIVE_SCORE",
    "ProviderConfig",
    "SearchConfig",
    "choices",
    "default_cache_path",
    "provider_env",
    "section_of",
    "sections",
]


def choices(role: Role) -> tuple[str, ...]:
    """The names a configuration may give for a role: the registered providers and the built-ins
    (``local``: the embedded index, or for pages the local reader; ``none``: no page reading)."""
    if role == "reader":
        return ("local", *names_of("reader"), "none")
    return (*names_of(role), "local")


def section_of(name: str) -> str:
    """The config section of a provider (``serpapi`` for ``serpapi-lens``: same key, same base URL)."""
    return PROVIDERS[name].config_section if name in PROVIDERS else name


_ENV_FIELDS = {"api_key": "_API_KEY", "base_url": "_BASE_URL"}


def provider_env(env: Mapping[str, str]) -> dict[str, dict[str, str]]:
    """The provider sections set by environment variables (``SERPAPI_API_KEY`` ...)."""
    found: dict[str, dict[str, str]] = {}
    for section in sections():
        for attr, suffix in _ENV_FIELDS.items():
            value = env.get(section.upper() + suffix, "").strip()
            if value:
                found.setdefault(section, {})[attr] = value
    return found


def default_cache_path(env: Mapping[str, str] | None = None) -> Path:
    """``$XDG_CACHE_HOME/mmsr/search-cache.sqlite`` (``~/.cache/...`` without the variable)."""
    env = os.environ if env is None else env
    root = Path(env["XDG_CACHE_HOME"]) if env.get("XDG_CACHE_HOME") else Path.home() / ".cache"
    return root / "mmsr" / "search-cache.sqlite"


def is_web(name: str) -> bool:
    return name != "local"


@dataclass(frozen=True)
class ProviderConfig:
    api_key: str | None = field(default=None, repr=False)
    base_url: str | None = None
    options: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class SearchConfig:
    """Everything :func:`~mmsr_serve.search.factory.build_search` needs; ``Settings.search_config()``
    makes one from the server's settings."""

    image: tuple[str, ...] = ()
    """Image search providers, in fallback order (``serpapi-lens``, ``local``)."""
    text: tuple[str, ...] = ()
    """Text search providers, in fallback order."""
    index: Path | None = None
    """The local corpus folder (for ``local``)."""
    index_path: Path | None = None
    """Where the local index file lives; default inside the corpus folder (which may be read-only)."""
    index_min_score: float = DEFAULT_MIN_RELATIVE_SCORE
    """Local text hits under this share of the best hit's score are dropped."""
    cache: Path | None = None
    """The cache file every provider goes through; ``None``: no cache."""
    cache_mode: Literal["readwrite", "replay", "refresh"] = "readwrite"
    reader: str = "local"
    """How web pages are read before summarizing: ``local``, ``jina``, or ``none`` (the search
    results' own snippets are the hits, no reading or summarizing)."""
    summarizer_base_url: str | None = None
    summarizer_model: str | None = None
    summarizer_api_key: str | None = field(default=None, repr=False)
    public_base_url: str | None = None
    public_image_ttl_s: float = 300.0
    public_image_dir: Path | None = None
    providers: Mapping[str, ProviderConfig] = field(default_factory=dict)
    prices: Mapping[str, Any] = field(default_factory=dict)
    fetch_allow: tuple[str, ...] = ()
    """Hosts or networks the page and thumbnail fetchers may reach although not public (tests)."""
    search_timeout_s: float = 20.0
    read_timeout_s: float = 15.0
    summarize_timeout_s: float = 30.0
    deadline_s: float = 50.0
    concurrency: int = 5
    retry: RetryPolicy = field(default_factory=RetryPolicy)

    def provider(self, name: str) -> ProviderConfig:
        return self.providers.get(section_of(name)) or ProviderConfig()

    @property
    def web_providers(self) -> list[str]:
        return [name for name in (*self.image, *self.text) if is_web(name)]
