"""The real providers, for a user with keys and internet access; every test is skipped otherwise.

    SERPAPI_API_KEY=... BRAVE_API_KEY=... pytest tests/search/test_live.py -v

What each test needs: ``SERPAPI_API_KEY`` (Google, Lens, the full pipeline), ``BRAVE_API_KEY``,
``TAVILY_API_KEY``, ``SEARXNG_BASE_URL`` (your instance, JSON format enabled),
``MMSR_LIVE_WEB=1`` (DuckDuckGo, the local reader, Jina Reader; ``JINA_API_KEY`` optional),
``MMSR_SUMMARIZER_BASE_URL`` + ``MMSR_SUMMARIZER_MODEL`` (+ ``MMSR_SUMMARIZER_API_KEY``).
``MMSR_LIVE_IMAGE_URL`` replaces the public picture used for Lens. Each paid test makes one or
two API calls (SerpAPI: about $0.015 each).
"""

from __future__ import annotations

import os

import pytest

from mmsr_serve.images import load_image
from mmsr_serve.search.base import TextHit
from mmsr_serve.search.brave import BraveSearch
from mmsr_serve.search.duckduckgo import DuckDuckGoSearch
from mmsr_serve.search.pipeline import TextPipeline
from mmsr_serve.search.reader import JinaReader, LocalReader, Page
from mmsr_serve.search.searxng import SearxngSearch
from mmsr_serve.search.serpapi import SerpApiGoogle, SerpApiLens
from mmsr_serve.search.summarize import ExtractiveSummarizer, LLMSummarizer
from mmsr_serve.search.tavily import TavilySearch

pytestmark = pytest.mark.network
QUERY = "Eiffel Tower height in metres"
PAGE = "https://en.wikipedia.org/wiki/Eiffel_Tower"
IMAGE = os.environ.get(
    "MMSR_LIVE_IMAGE_URL",
    "https://upload.wikimedia.org/wikipedia/commons/thumb/8/85/Tour_Eiffel_Wikimedia_Commons_%28cropped%29.jpg"
    "/480px-Tour_Eiffel_Wikimedia_Commons_%28cropped%29.jpg",
)


def needs(*names: str) -> pytest.MarkDecorator:
    missing = [name for name in names if not os.environ.get(name)]
    return pytest.mark.skipif(bool(missing), reason=f"set {', '.join(missing)} to run")


def env(name: str) -> str:
    return os.environ[name]


def assert_web_hits(hits: list[object], k: int) -> None:
    assert 0 < len(hits) <= k
    for hit in hits:
        assert isinstance(hit, TextHit) and hit.url.startswith("http") and hit.title


@needs("SERPAPI_API_KEY")
async def test_serpapi_google() -> None:
    provider = SerpApiGoogle(env("SERPAPI_API_KEY"))
    assert_web_hits((await provider.search_text(QUERY, 3)).hits, 3)
    await provider.aclose()


@needs("SERPAPI_API_KEY")
async def test_serpapi_lens_on_a_public_image() -> None:
    image = await load_image(IMAGE)
    provider = SerpApiLens(env("SERPAPI_API_KEY"))
    results = await provider.search_image(image, 5)
    assert results.hits and all(h.url.startswith("http") for h in results.hits)
    assert any(h.thumbnail_image() is not None for h in results.hits)
    await provider.aclose()


@needs("BRAVE_API_KEY")
async def test_brave() -> None:
    provider = BraveSearch(env("BRAVE_API_KEY"), base_url=os.environ.get("BRAVE_BASE_URL"))
    assert_web_hits((await provider.search_text(QUERY, 3)).hits, 3)
    await provider.aclose()


@needs("TAVILY_API_KEY")
async def test_tavily() -> None:
    provider = TavilySearch(env("TAVILY_API_KEY"), base_url=os.environ.get("TAVILY_BASE_URL"))
    assert_web_hits((await provider.search_text(QUERY, 3)).hits, 3)
    await provider.aclose()


@needs("SEARXNG_BASE_URL")
async def test_searxng() -> None:
    provider = SearxngSearch(env("SEARXNG_BASE_URL"))
    assert_web_hits((await provider.search_text(QUERY, 3)).hits, 3)
    await provider.aclose()


@needs("MMSR_LIVE_WEB")
async def test_duckduckgo() -> None:
    assert_web_hits((await DuckDuckGoSearch().search_text(QUERY, 3)).hits, 3)


@needs("MMSR_LIVE_WEB")
async def test_readers() -> None:
    local = await LocalReader().read(PAGE)
    assert "Eiffel" in local.title and "Gustave" in local.text
    jina = JinaReader(os.environ.get("JINA_API_KEY"))
    page = await jina.read(PAGE)
    assert "Eiffel" in page.title and "Gustave" in page.text
    await jina.aclose()


@needs("MMSR_SUMMARIZER_BASE_URL", "MMSR_SUMMARIZER_MODEL")
async def test_llm_summarizer() -> None:
    llm = LLMSummarizer(
        env("MMSR_SUMMARIZER_BASE_URL"),
        env("MMSR_SUMMARIZER_MODEL"),
        api_key=os.environ.get("MMSR_SUMMARIZER_API_KEY"),
    )
    page = Page(PAGE, "Eiffel Tower", "The Eiffel Tower is 330 metres tall. It was built from 1887 to 1889.")
    assert "330" in await llm.summarize(QUERY, page)
    await llm.aclose()


@needs("SERPAPI_API_KEY")
async def test_the_whole_text_pipeline() -> None:
    search = SerpApiGoogle(env("SERPAPI_API_KEY"))
    pipeline = TextPipeline(search, LocalReader(), ExtractiveSummarizer())
    results = await pipeline.search_text(QUERY, 3)
    assert_web_hits(results.hits, 3)
    assert any("330" in h.text or "metre" in h.text for h in results.hits if isinstance(h, TextHit))
    await search.aclose()
