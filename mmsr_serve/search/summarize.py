"""Query-focused summaries of web pages: an LLM when one is configured, BM25 passages otherwise.

- :class:`LLMSummarizer` asks any OpenAI-compatible chat model (vLLM, SGLang, a hosted API; in
  the paper Qwen3-32B) to summarize the page for the query: one request per page, the page cut to
  ``max_input_chars``, the summary to ``max_tokens``. A reasoning model's ``<think>...</think>``
  block is removed. Errors follow :mod:`._http` (retries on timeouts, connection errors, 429 and
  5xx; the key masked everywhere); token usage is metered as ``summarizer``.
- :class:`ExtractiveSummarizer` needs nothing: the page is cut into passages (paragraphs, long ones
  into runs of sentences), ranked by BM25 against the query, and the best are kept, in page order,
  within ``max_chars``. With no query term on the page, its opening passages are kept.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from mmsr_serve._secret import Secret
from mmsr_serve.errors import (
    ProviderAuthError,
    ProviderError,
    ProviderRateLimited,
    ProviderResponseError,
    ProviderUnavailable,
)
from mmsr_serve.search._http import RetryPolicy, with_retries
from mmsr_serve.search._text_index import _stem, query_words
from mmsr_serve.search.costs import Meter
from mmsr_serve.search.reader import Page

if TYPE_CHECKING:
    import openai

__all__ = ["SUMMARY_PROMPT", "ExtractiveSummarizer", "LLMSummarizer", "Summarizer", "bm25_passages"]


@runtime_checkable
class Summarizer(Protocol):
    name: str

    async def summarize(self, query: str, page: Page) -> str: ...


_WORD = re.compile(r"[^\W_]+")
_SENTENCE = re.compile(r"(?<=[.!?])\s+")
_THINK = re.compile(r"<think>.*?</think>", re.DOTALL)


def _passages(text: str, size: int) -> list[str]:
    """Paragraphs, with long ones split into runs of sentences of about ``size`` characters."""
    out: list[str] = []
    for paragraph in (" ".join(p.split()) for p in re.split(r"\n\s*\n|\n", text)):
        if len(paragraph) <= size:
            if paragraph:
                out.append(paragraph)
            continue
        run = ""
        for sentence in _SENTENCE.split(paragraph):
            if run and len(run) + len(sentence) + 1 > size:
                out.append(run)
                run = ""
            run = f"{run} {sentence}".strip()
        if run:
            out.append(run)
    return [p[: size * 2] for p in out]


def bm25_passages(
    query: str,
    text: str,
    *,
    max_chars: int = 1200,
    passage_chars: int = 400,
    k1: float = 1.2,
    b: float = 0.75,
) -> str:
    """The passages of ``text`` that best match ``query`` (BM25), in text order, within ``max_chars``."""
    passages = _passages(text, passage_chars)
    if not passages:
        return ""
    terms = {_stem(w) for w in query_words(query)}
    docs = [Counter(_stem(w) for w in _WORD.findall(p)) for p in passages]
    avg_len = sum(sum(d.values()) for d in docs) / len(docs) or 1.0
    df = Counter(t for d in docs for t in terms if t in d)
    idf = {t: math.log(1 + (len(docs) - n + 0.5) / (n + 0.5)) for t, n in df.items()}

    def score(doc: Counter[str]) -> float:
        length = sum(doc.values())
        return sum(
            idf[t] * doc[t] * (k1 + 1) / (doc[t] + k1 * (1 - b + b * length / avg_len))
            for t in idf
            if t in doc
        )

    scores = [score(d) for d in docs]
    order = sorted((i for i, s in enumerate(scores) if s > 0), key=lambda i: -scores[i])
    order = order or list(range(len(passages)))  # nothing matched: the opening passages
    chosen: list[int] = []
    used = 0
    for i in order:
        if used + len(passages[i]) <= max_chars or not chosen:
            chosen.append(i)
            used += len(passages[i]) + 1
        if used >= max_chars:
            break
    return "\n".join(passages[i][:max_chars] for i in sorted(chosen))


class ExtractiveSummarizer:
    name = "bm25"

    def __init__(self, *, max_chars: int = 1200, passage_chars: int = 400) -> None:
        self.max_chars = max_chars
        self.passage_chars = passage_chars

    async def summarize(self, query: str, page: Page) -> str:
        return bm25_passages(query, page.text, max_chars=self.max_chars, passage_chars=self.passage_chars)


SUMMARY_PROMPT = """Summarize the web page below for someone who needs to answer this query: {query}

Keep only facts from the page that help answer the query (names, dates, numbers, places), in at \
most {words} words. Do not add anything that is not on the page. If the page says nothing useful \
for the query, say so in one sentence.

Page title: {title}
Page URL: {url}
Page text:
{text}"""


class LLMSummarizer:
    """Summaries by an OpenAI-compatible chat model at ``base_url``."""

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        api_key: str | Secret | None = None,
        meter: Meter | None = None,
        timeout_s: float = 60.0,
        retry: RetryPolicy | None = None,
        max_input_chars: int = 12_000,
        max_tokens: int = 512,
        words: int = 150,
        prompt: str = SUMMARY_PROMPT,
        client: openai.AsyncOpenAI | None = None,
    ) -> None:
        import openai  # here, not at the top: importing it takes a third of a second

        self.name = f"llm:{model}"
        self.model = model
        self.meter = meter or Meter()
        self.retry = retry or RetryPolicy()
        self.max_input_chars = max_input_chars
        self.max_tokens = max_tokens
        self.words = words
        self.prompt = prompt
        key = api_key if isinstance(api_key, Secret) else Secret(api_key or "")
        self._client = client or openai.AsyncOpenAI(
            base_url=base_url, api_key=key.reveal() or "EMPTY", timeout=timeout_s, max_retries=0
        )

    def __repr__(self) -> str:
        return f"LLMSummarizer(model={self.model!r})"

    async def summarize(self, query: str, page: Page) -> str:
        content = self.prompt.format(
            query=query,
            words=self.words,
            title=page.title,
            url=page.url,
            text=page.text[: self.max_input_chars],
        )
        return await with_retries(self.retry, lambda: self._once(content))

    async def _once(self, content: str) -> str:
        import openai

        failure: ProviderError | None = None
        try:
            response = await self._client.chat.completions.create(
                model=self.model,
                messages=[{"role": "user", "content": content}],
                max_tokens=self.max_tokens,
                temperature=0.0,
            )
        except openai.OpenAIError as exc:
            failure = _translate(exc)
        if failure is not None:  # raised here, outside the except block: no chained openai error
            self.meter.record("summarizer", failure.outcome)
            raise failure
        tokens = response.usage.total_tokens if response.usage else 0
        text = (response.choices[0].message.content or "") if response.choices else ""
        text = _THINK.sub("", text).strip()
        if not text:
            self.meter.record("summarizer", "bad_response", tokens=tokens)
            raise ProviderResponseError("summarizer", "the model returned an empty summary")
        self.meter.record("summarizer", "ok", tokens=tokens)
        return text

    async def aclose(self) -> None:
        await self._client.close()


def _translate(exc: openai.OpenAIError) -> ProviderError:
    import openai

    name = "summarizer"
    if isinstance(exc, openai.APITimeoutError):
        return ProviderUnavailable(name, "no answer in time", outcome="timeout")
    if isinstance(exc, openai.APIConnectionError):
        return ProviderUnavailable(name, "cannot connect", outcome="connection_error")
    if isinstance(exc, openai.APIStatusError):
        status = exc.status_code
        if status in (401, 403):
            return ProviderAuthError(
                name, f"access refused, HTTP {status} (check the API key)", status=status
            )
        if status == 429:
            return ProviderRateLimited(name, "rate limited, HTTP 429")
        if status >= 500:
            return ProviderUnavailable(name, f"server error, HTTP {status}", status=status)
        return ProviderError(name, f"request refused, HTTP {status}: {exc.message[:200]}", status=status)
    return ProviderError(name, f"failed: {type(exc).__name__}")
