"""The web providers mmsr knows: one :class:`Provider` line each.

A line names the provider, what it does (``image`` search, ``text`` search or ``reader``: reading
web pages), its class as ``module:Class`` (imported when first built), the config section its key,
base URL and options come from (``providers.<section>`` in a config file, ``<SECTION>_API_KEY`` and
``<SECTION>_BASE_URL`` in the environment), whether it needs a key or a configured base URL, and
whether its calls cost money. Everything else (the config validation, the environment variables,
the factory, the start-up warnings) reads this table. The embedded ``local`` index is not a web
provider and is not listed. docs/search.md ("Adding a provider") says how to add one.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, Literal

__all__ = ["PROVIDERS", "Provider", "names_of", "sections"]

Role = Literal["image", "text", "reader"]


@dataclass(frozen=True)
class Provider:
    name: str
    role: Role
    target: str
    """``module:Class``; the class takes ``(api_key, *, base_url, options, meter, retry)``."""
    section: str = ""
    """The config section (default: the name); providers of one vendor share one key."""
    key: Literal["required", "optional", "none"] = "required"
    base_url_required: bool = False
    """Self-hosted: no public endpoint, ``<SECTION>_BASE_URL`` must be set."""
    paid: bool = False
    options: frozenset[str] | None = None
    """The options it accepts (``None``: any, sent to the API as they are)."""

    @property
    def config_section(self) -> str:
        return self.section or self.name

    @property
    def key_env(self) -> str:
        return self.config_section.upper() + "_API_KEY"

    @property
    def base_url_env(self) -> str:
        return self.config_section.upper() + "_BASE_URL"

    def load(self) -> Any:
        """The provider's class."""
        module, _, attribute = self.target.partition(":")
        return getattr(importlib.import_module(module), attribute)


PROVIDERS: dict[str, Provider] = {
    p.name: p
    for p in (
        Provider("serpapi-lens", "image", "mmsr_serve.search.serpapi:SerpApiLens", "serpapi", paid=True),
        Provider("serpapi", "text", "mmsr_serve.search.serpapi:SerpApiGoogle", paid=True),
        Provider("brave", "text", "mmsr_serve.search.brave:BraveSearch", paid=True),
        Provider("tavily", "text", "mmsr_serve.search.tavily:TavilySearch", paid=True),
        Provider(
            "searxng", "text", "mmsr_serve.search.searxng:SearxngSearch", key="none", base_url_required=True
        ),
        Provider(
            "duckduckgo",
            "text",
            "mmsr_serve.search.duckduckgo:DuckDuckGoSearch",
            key="none",
            options=frozenset({"backend", "region", "safesearch", "timeout_s"}),
        ),
        Provider("jina", "reader", "mmsr_serve.search.reader:JinaReader", key="optional"),
    )
}


def names_of(role: Role) -> tuple[str, ...]:
    """The registered providers of one role, in table order."""
    return tuple(name for name, p in PROVIDERS.items() if p.role == role)


def sections() -> tuple[str, ...]:
    """Every config section, in table order (``serpapi`` once for both SerpAPI engines)."""
    return tuple(dict.fromkeys(p.config_section for p in PROVIDERS.values()))
