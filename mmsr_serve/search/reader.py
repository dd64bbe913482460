"""Page readers: a URL in, the page's main text out (for the text pipeline's summaries).

- :class:`LocalReader` fetches the page itself, through the safe fetcher (public addresses only,
  ``max_bytes``, ``timeout_s``, and only ``text/html``, ``application/xhtml+xml`` or ``text/plain``
  responses), and extracts the main text with trafilatura (boilerplate, menus and comments
  dropped; the whole page's text when trafilatura finds no main part). No key, no cost.
- :class:`JinaReader` asks Jina Reader (``POST {base_url}/`` with ``{"url": ...}``, JSON answer
  ``{"data": {"title", "url", "content", "usage": {"tokens"}}}``); it renders JavaScript and reads
  PDFs, which the local reader does not. The key (``JINA_API_KEY``) is optional: without one Jina
  applies a lower rate limit. Jina fetches the page from its own servers.

Both cut the text to ``max_chars``. Failures are :class:`~mmsr_serve.errors.SearchError` s
(:class:`~mmsr_serve.fetch.FetchError` or a provider error): the pipeline drops that page.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from mmsr_serve._secret import Secret
from mmsr_serve.errors import ConfigError, ProviderResponseError
from mmsr_serve.fetch import FetchError, SafeFetcher
from mmsr_serve.search.http_provider import HttpProvider

__all__ = ["PAGE_TYPES", "JinaReader", "LocalReader", "Page", "PageReader", "extract_main_text"]

PAGE_TYPES = ("text/html", "application/xhtml+xml", "text/plain")
DEFAULT_MAX_CHARS = 20_000
DEFAULT_MAX_BYTES = 5 * 1024 * 1024
JINA_BASE_URL = "https://r.jina.ai"


@dataclass(frozen=True)
class Page:
    url: str
    title: str
    text: str


@runtime_checkable
class PageReader(Protocol):
    name: str

    async def read(self, url: str) -> Page: ...


_WARM_PAGE = b"<html><head><title>t</title></head><body><article><p>A page.</p></article></body></html>"


def extract_main_text(data: bytes, content_type: str, url: str | None = None) -> tuple[str, str]:
    """``(title, text)`` of a fetched page (CPU-bound: call it in a worker thread). The HTML is
    parsed once: the title is read from the tree before the extraction prunes it."""
    if content_type == "text/plain":
        return "", data.decode("utf-8", "replace").strip()
    import trafilatura

    tree = _parsed(data)
    page = data if tree is None else tree
    title = page_title(page)
    doc: Any = trafilatura.bare_extraction(
        page,
        url=url,
        with_metadata=False,
        include_comments=False,
        include_tables=True,
    )
    text = (getattr(doc, "text", None) or "") if doc else ""
    if not text:
        text = trafilatura.html2txt(data) or ""
    return title.strip(), text.strip()


def _parsed(data: bytes) -> Any:
    """The page's tree as trafilatura parses it, or None (trafilatura then takes the bytes)."""
    try:
        from trafilatura.utils import load_html
    except ImportError:  # another trafilatura layout
        return None
    return load_html(data)


def page_title(page: Any) -> str:
    """The page's title (bytes, or the tree trafilatura parsed) as trafilatura's metadata
    extraction finds it (meta tags, then JSON-LD, then the title and heading elements), without
    the rest of that extraction: dates, authors, categories and site names took 70% of reading a
    page and are not used here."""
    try:
        from trafilatura.metadata import examine_meta, extract_meta_json, extract_title
        from trafilatura.utils import load_html
    except ImportError:  # another trafilatura layout: the whole metadata extraction
        import trafilatura

        return str(getattr(trafilatura.extract_metadata(page), "title", None) or "")
    tree = load_html(page)  # a tree is taken as it is
    if tree is None:
        return ""
    meta = examine_meta(tree)
    with contextlib.suppress(Exception):  # trafilatura's own JSON-LD bugs, as it guards them itself
        meta = extract_meta_json(tree, meta)
    return str(meta.title or extract_title(tree) or "")


class LocalReader:
    name = "local"

    def __init__(
        self,
        fetcher: SafeFetcher | None = None,
        *,
        allow: Sequence[str] = (),
        max_bytes: int = DEFAULT_MAX_BYTES,
        timeout_s: float = 15.0,
        max_chars: int = DEFAULT_MAX_CHARS,
    ) -> None:
        if importlib.util.find_spec("trafilatura") is None:
            raise ConfigError(
                "the local page reader needs trafilatura: pip install 'mmsr[web]' (or use --page-reader jina)"
            )
        self._own_fetcher = fetcher is None
        self._fetcher = fetcher or SafeFetcher(
            allow=allow, max_bytes=max_bytes, timeout_s=timeout_s, keepalive=True
        )
        self.max_chars = max_chars

    def __repr__(self) -> str:
        return "LocalReader()"

    async def aclose(self) -> None:
        if self._own_fetcher:
            await self._fetcher.aclose()

    def warm(self) -> None:
        """Extract a tiny page once: trafilatura's imports and set-up (about 350 ms) then happen
        at start-up, not in the first request that reads a page."""
        extract_main_text(_WARM_PAGE, "text/html")

    async def read(self, url: str) -> Page:
        fetched = await self._fetcher.fetch(url, accept=PAGE_TYPES)
        try:
            title, text = await asyncio.to_thread(
                extract_main_text, fetched.data, fetched.content_type, fetched.url
            )
        except Exception as exc:  # the extractor's (lxml's) own errors, on a page it cannot parse
            raise FetchError(f"cannot extract the text of {fetched.url}: {exc!r}"[:300], url=url) from exc
        if not text:
            raise FetchError(f"no readable text at {fetched.url}", url=fetched.url)
        return Page(fetched.url, title, text[: self.max_chars])


def _tokens(answer: Any) -> int:
    try:
        return int(answer["data"]["usage"]["tokens"])
    except (KeyError, TypeError, ValueError):
        return 0


class JinaReader(HttpProvider):
    name = "jina"
    default_base_url = JINA_BASE_URL
    key_env = "JINA_API_KEY"
    default_timeout_s = 30.0

    def __init__(
        self, api_key: str | Secret | None = None, *, max_chars: int = DEFAULT_MAX_CHARS, **kwargs: Any
    ) -> None:
        super().__init__(api_key, **kwargs)
        self.max_chars = max_chars

    async def read(self, url: str) -> Page:
        if not url.startswith(("http://", "https://")):
            raise FetchError(f"only http and https pages can be read, not {url[:50]!r}", url=url)
        headers = {"Accept": "application/json", "X-Return-Format": "markdown"}
        if self.has_key:
            headers["Authorization"] = f"Bearer {self.require_key()}"
        answer = await self.request("POST", "/", json_body={"url": url}, headers=headers, tokens_of=_tokens)
        data = answer.get("data") if isinstance(answer, dict) else None
        content = data.get("content") if isinstance(data, dict) else None
        if not isinstance(data, dict) or not isinstance(content, str) or not content.strip():
            raise ProviderResponseError(self.name, f"no content for {url[:100]}")
        title = str(data.get("title") or "")
        return Page(str(data.get("url") or url), title.strip(), content.strip()[: self.max_chars])
