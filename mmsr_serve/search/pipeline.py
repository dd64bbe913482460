"""The paper's text search: web search -> read the top-k pages -> summarize each for the query.

:class:`TextPipeline` is a :class:`~mmsr_serve.search.base.TextSearchTool` composed of a web
search tool, a :class:`~mmsr_serve.search.reader.PageReader` and a
:class:`~mmsr_serve.search.summarize.Summarizer`::

    pipeline = TextPipeline(SerpApiGoogle(key), LocalReader(), LLMSummarizer(url, "Qwen3-32B"))
    results = await pipeline.search_text("glass heron sculpture Lisbon", 5)

Timing: the search stage has ``search_timeout_s``; then every page is read and summarized
concurrently (at most ``concurrency`` at a time), each read within ``read_timeout_s`` and each
summary within ``summarize_timeout_s``; and the whole call ends by ``deadline_s``, keeping what
is done by then. A page that cannot be read or summarized in time is dropped: three summaries out
of five are an answer. If no page makes it, the call raises :class:`~mmsr_serve.errors.SearchError`
(the model is told the search failed); a search with no results returns no hits.

Hits keep the search's rank order: title (the page's, else the search result's), URL, and the
summary as text; the prompt pack numbers them with their links.
"""

from __future__ import annotations

import asyncio

from mmsr_serve.errors import SearchError
from mmsr_serve.search.base import SearchResults, TextHit, TextSearchTool
from mmsr_serve.search.reader import PageReader
from mmsr_serve.search.summarize import Summarizer

__all__ = ["TextPipeline"]


class TextPipeline:
    def __init__(
        self,
        search: TextSearchTool,
        reader: PageReader,
        summarizer: Summarizer,
        *,
        search_timeout_s: float = 20.0,
        read_timeout_s: float = 15.0,
        summarize_timeout_s: float = 30.0,
        deadline_s: float = 50.0,
        concurrency: int = 5,
    ) -> None:
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        self.search, self.reader, self.summarizer = search, reader, summarizer
        self.name = f"{search.name}+{reader.name}+{summarizer.name}"
        self.search_timeout_s = search_timeout_s
        self.read_timeout_s = read_timeout_s
        self.summarize_timeout_s = summarize_timeout_s
        self.deadline_s = deadline_s
        self.concurrency = concurrency

    def __repr__(self) -> str:
        return f"TextPipeline({self.search!r}, {self.reader!r}, {self.summarizer!r})"

    @property
    def takes_location(self) -> bool:
        """Whether its results depend on the user's location (mmsr_serve.search.location)."""
        return bool(getattr(self.search, "takes_location", False))

    async def search_text(self, query: str, k: int) -> SearchResults:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.deadline_s

        def left(stage_s: float) -> float:
            return max(0.0, min(stage_s, deadline - loop.time()))

        try:
            found = await asyncio.wait_for(self.search.search_text(query, k), left(self.search_timeout_s))
        except asyncio.TimeoutError:
            raise SearchError(f"the web search gave no answer within {self.search_timeout_s:g} s") from None
        provider = f"{found.provider}+{self.reader.name}+{self.summarizer.name}"
        hits = [h for h in found.hits if isinstance(h, TextHit) and h.url][:k]
        if not hits:
            return SearchResults([], provider)
        slots = asyncio.Semaphore(self.concurrency)

        async def one(hit: TextHit) -> TextHit:
            async with slots:
                page = await asyncio.wait_for(self.reader.read(hit.url), left(self.read_timeout_s))
                summary = await asyncio.wait_for(
                    self.summarizer.summarize(query, page), left(self.summarize_timeout_s)
                )
            return TextHit(page.title or hit.title, hit.url, summary, hit.score)

        tasks = [asyncio.ensure_future(one(hit)) for hit in hits]
        try:
            done, _ = await asyncio.wait(tasks, timeout=left(self.deadline_s))
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        summaries: list[TextHit] = []
        errors: list[str] = []
        for hit, task in zip(hits, tasks, strict=True):
            if task not in done:
                errors.append(f"{hit.url}: not done by the deadline")
                continue
            exc = task.exception()
            if exc is None:
                summaries.append(task.result())
            elif isinstance(exc, asyncio.TimeoutError):
                errors.append(f"{hit.url}: timed out")
            elif isinstance(exc, SearchError):
                errors.append(str(exc))
            else:
                raise exc  # our own bug: not the web's fault
        if not summaries:
            raise SearchError(
                f"found {len(hits)} pages but could not read or summarize any of them ({errors[0]})"
            )
        return SearchResults(list(summaries), provider)
