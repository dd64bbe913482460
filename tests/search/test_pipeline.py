"""The text pipeline (search -> read -> summarize), its readers and summarizers, and fallback chains."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from mmsr_serve.errors import CacheMissError, SearchError
from mmsr_serve.fetch import FetchError
from mmsr_serve.search._http import ProviderAuthError, ProviderUnavailable
from mmsr_serve.search.base import SearchResults, TextHit
from mmsr_serve.search.costs import Meter, ProviderCall
from mmsr_serve.search.fallback import FallbackTextSearch
from mmsr_serve.search.pipeline import TextPipeline
from mmsr_serve.search.reader import JinaReader, LocalReader, Page
from mmsr_serve.search.summarize import ExtractiveSummarizer, LLMSummarizer, bm25_passages
from tests.search.conftest import FAST
from tests.search.standins import BOILERPLATE, FACTS, KEYS, StandIn


class Search:
    name = "fake-search"

    def __init__(self, n: int = 5, *, fail: bool = False, delay: float = 0.0) -> None:
        self.n, self.fail, self.delay = n, fail, delay
        self.calls = 0

    async def search_text(self, query: str, k: int) -> SearchResults:
        self.calls += 1
        await asyncio.sleep(self.delay)
        if self.fail:
            raise SearchError(f"{self.name}: down")
        hits = [
            TextHit(f"Result {i}", f"https://site.example/{i}", f"snippet {i}") for i in range(min(k, self.n))
        ]
        return SearchResults(list(hits), self.name)


class Reader:
    """Reads ``https://site.example/{i}``; pages listed in ``broken`` fail, in ``slow`` take ``slow_s``."""

    name = "fake-reader"

    def __init__(
        self, broken: set[int] = frozenset(), slow: set[int] = frozenset(), slow_s: float = 5.0
    ) -> None:  # type: ignore[assignment]
        self.broken, self.slow, self.slow_s = broken, slow, slow_s
        self.active = self.peak = 0

    async def read(self, url: str) -> Page:
        i = int(url.rsplit("/", 1)[1])
        self.active += 1
        self.peak = max(self.peak, self.active)
        try:
            await asyncio.sleep(self.slow_s if i in self.slow else 0.01)
        finally:
            self.active -= 1
        if i in self.broken:
            raise FetchError(f"{url} answered HTTP 403", url=url, status=403)
        return Page(url, f"Page {i}", f"Page {i} says the heron was cast in {1850 + i}.")


class Upper:
    name = "upper"

    async def summarize(self, query: str, page: Page) -> str:
        return f"[{query}] {page.text.upper()}"


def pipeline(search: Any = None, reader: Any = None, **kwargs: Any) -> TextPipeline:
    return TextPipeline(search or Search(), reader or Reader(), Upper(), **kwargs)


async def test_summaries_in_search_order_with_their_links() -> None:
    results = await pipeline().search_text("heron year", 3)
    assert results.provider == "fake-search+fake-reader+upper"
    assert [(h.title, h.url) for h in results.hits] == [
        (f"Page {i}", f"https://site.example/{i}") for i in range(3)
    ]
    assert results.hits[1].text == "[heron year] PAGE 1 SAYS THE HERON WAS CAST IN 1851."


async def test_partial_results_are_an_answer_and_none_is_an_error() -> None:
    results = await pipeline(reader=Reader(broken={1, 3})).search_text("q", 5)
    assert [h.url[-1] for h in results.hits] == ["0", "2", "4"]
    with pytest.raises(SearchError, match=r"found 2 pages but could not read or summarize any.*HTTP 403"):
        await pipeline(Search(n=2), Reader(broken={0, 1})).search_text("q", 5)
    assert (await pipeline(Search(n=0)).search_text("q", 5)).hits == []
    with pytest.raises(SearchError, match="fake-search: down"):
        await pipeline(Search(fail=True)).search_text("q", 5)


async def test_stage_timeouts_and_the_overall_deadline_keep_what_is_done() -> None:
    loop = asyncio.get_running_loop()
    started = loop.time()
    slow = await pipeline(reader=Reader(slow={0}), read_timeout_s=0.1).search_text("q", 3)
    assert [h.url[-1] for h in slow.hits] == ["1", "2"] and loop.time() - started < 1
    started = loop.time()
    late = await pipeline(reader=Reader(slow={1, 2}, slow_s=0.3), deadline_s=0.15).search_text("q", 3)
    assert [h.url[-1] for h in late.hits] == ["0"] and loop.time() - started < 0.5
    with pytest.raises(SearchError, match=r"no answer within 0\.05 s"):
        await pipeline(Search(delay=1), search_timeout_s=0.05).search_text("q", 3)


async def test_reads_are_bounded_in_concurrency() -> None:
    reader = Reader()
    results = await pipeline(reader=reader, concurrency=2).search_text("q", 5)
    assert len(results.hits) == 5 and reader.peak == 2


async def test_our_own_bugs_are_not_swallowed() -> None:
    class Buggy(Upper):
        async def summarize(self, query: str, page: Page) -> str:
            raise KeyError("bug")

    with pytest.raises(KeyError):
        await TextPipeline(Search(), Reader(), Buggy()).search_text("q", 2)


async def test_fallback_chain() -> None:
    down, empty, up = Search(fail=True), Search(n=0), Search(n=3)
    up.name = "up"
    results = await FallbackTextSearch([down, empty, up]).search_text("q", 2)
    assert results.provider == "up" and len(results.hits) == 2
    assert (down.calls, empty.calls, up.calls) == (1, 1, 1)
    assert (await FallbackTextSearch([down, empty]).search_text("q", 2)).hits == []

    class Miss:
        name = "cached"

        async def search_text(self, query: str, k: int) -> SearchResults:
            raise CacheMissError("no recorded text search result for this query (k=2) from cached")

    with pytest.raises(SearchError, match="every search provider failed: fake-search: down; no recorded"):
        await FallbackTextSearch([down, Miss()]).search_text("q", 2)
    assert FallbackTextSearch([down, up]).name == "fake-search,up"


def test_bm25_keeps_the_best_passages_in_page_order() -> None:
    text = "\n".join(["Cookies and newsletter.", *FACTS, "Share on social media."])
    assert bm25_passages("who made it", text, max_chars=160) == FACTS[1]
    both = bm25_passages("heron restorers storm", text, max_chars=400)
    assert both.splitlines() == [FACTS[0], FACTS[2], FACTS[3]]
    assert bm25_passages("zebra", "First line.\nSecond line.", max_chars=20) == "First line."
    long = "A sentence about herons. " * 100
    assert len(bm25_passages("herons", long, max_chars=300, passage_chars=100)) <= 300


async def test_extractive_summarizer_is_query_focused() -> None:
    page = Page("https://x.example", "Heron", "\n\n".join(FACTS))
    summary = await ExtractiveSummarizer(max_chars=120).summarize("when was it made 1851", page)
    assert "1851" in summary and len(summary) <= 120


async def test_local_reader_extracts_the_main_text(standin: StandIn) -> None:
    reader = LocalReader(allow=["127.0.0.1"])
    page = await reader.read(f"{standin.base}/pages/p2.html")
    assert page.title == "Page 2 about the heron"
    assert FACTS[1] in page.text and BOILERPLATE not in page.text
    with pytest.raises(FetchError, match="application/pdf"):
        await reader.read(f"{standin.base}/pages/report.pdf")
    with pytest.raises(FetchError, match="non-public"):
        await LocalReader().read(f"{standin.base}/pages/p1.html")  # loopback: refused by default
    standin.fail("pages", 404)
    with pytest.raises(FetchError, match="404"):
        await reader.read(f"{standin.base}/pages/p3.html")


_BODY = "<body><nav>Home | About</nav><h1>{h1}</h1><article>" + "<p>{fact}</p>" * 3 + "</article></body>"


@pytest.mark.parametrize(
    "head",
    [
        "<title>The heron | Birds of the marsh</title>",
        '<title>Ignored</title><meta property="og:title" content="Herons, by the meta tags">',
        '<script type="application/ld+json">{"@type": "Article", "headline": "Herons in JSON-LD"}</script>',
        "",  # no title at all: the heading
    ],
    ids=["title", "og-title", "json-ld", "heading"],
)
def test_the_page_title_is_trafilaturas_without_the_rest_of_its_metadata(head: str) -> None:
    # extract_main_text skips the metadata extraction (dates, authors...: 70% of reading a page)
    # but must find the title the whole extraction finds.
    import trafilatura

    from mmsr_serve.search.reader import extract_main_text

    html = f"<html><head>{head}</head>" + _BODY.format(h1="A heron in the marsh", fact=FACTS[0]) + "</html>"
    whole = trafilatura.bare_extraction(html.encode(), with_metadata=True, include_tables=True)
    title, text = extract_main_text(html.encode(), "text/html")
    assert title == whole.title and title
    assert text == whole.text and FACTS[0] in text


async def test_jina_reader(standin: StandIn) -> None:
    meter = Meter()
    calls: list[ProviderCall] = []
    meter.subscribe(calls.append)
    reader = JinaReader(KEYS["jina"], base_url=f"{standin.base}/jina", meter=meter, retry=FAST)
    standin.fail("jina", 503)
    page = await reader.read("https://news.example/heron")
    assert page.title == "Read heron" and FACTS[0] in page.text and page.url == "https://news.example/heron"
    assert [(c.outcome, c.tokens) for c in calls] == [("server_error", 0), ("ok", 120)]
    seen = standin.seen("jina")[-1]
    assert seen.body == {"url": "https://news.example/heron"} and seen.headers["accept"] == "application/json"
    anonymous = JinaReader(base_url=f"{standin.base}/jina", retry=FAST)
    await anonymous.read("https://news.example/other")
    assert "authorization" not in standin.seen("jina")[-1].headers
    with pytest.raises(FetchError, match="only http and https"):
        await anonymous.read("file:///etc/passwd")


async def test_llm_summarizer(standin: StandIn) -> None:
    meter = Meter()
    calls: list[ProviderCall] = []
    meter.subscribe(calls.append)
    llm = LLMSummarizer(f"{standin.base}/v1", "stand-in", api_key=KEYS["llm"], meter=meter, retry=FAST)
    assert llm.name == "llm:stand-in" and KEYS["llm"] not in repr(llm)
    page = Page("https://x.example/heron", "The heron", "\n".join(FACTS))
    standin.fail("llm", 503)
    summary = await llm.summarize("who made it", page)
    assert summary == f"Summary of 'The heron' for 'who made it': {FACTS[0]}"  # <think> removed
    assert [(c.provider, c.outcome, c.tokens) for c in calls] == [
        ("summarizer", "server_error", 0),
        ("summarizer", "ok", 340),
    ]
    wrong = LLMSummarizer(f"{standin.base}/v1", "stand-in", api_key="llm-wrong-key", retry=FAST)
    with pytest.raises(ProviderAuthError, match="summarizer: access refused, HTTP 401"):
        await wrong.summarize("q", page)
    standin.fail("llm", 500, 500, 500)
    with pytest.raises(ProviderUnavailable):
        await llm.summarize("q", page)
