"""The web search providers against stand-ins on loopback that answer in each API's documented shape:
the hits, retries only where allowed, and keys that never show in errors, reprs or logs."""

from __future__ import annotations

import logging
import traceback
from collections import Counter, deque
from typing import Any

import pytest
from PIL import Image

from mmsr_serve.errors import SearchError
from mmsr_serve.images import InputImage, encode_image, load_image
from mmsr_serve.search._http import (
    ProviderAuthError,
    ProviderError,
    ProviderRateLimited,
    ProviderResponseError,
    ProviderUnavailable,
)
from mmsr_serve.search.brave import BraveSearch
from mmsr_serve.search.costs import Meter, ProviderCall
from mmsr_serve.search.duckduckgo import DuckDuckGoSearch
from mmsr_serve.search.location import SearchLocation, search_location
from mmsr_serve.search.publish import ImagePublisher
from mmsr_serve.search.searxng import SearxngSearch
from mmsr_serve.search.serpapi import SerpApiGoogle, SerpApiLens
from mmsr_serve.search.tavily import TavilySearch
from mmsr_serve.search.thumbnails import THUMBNAIL_PIXELS, thumbnail_fetcher
from tests.search.conftest import FAST
from tests.search.standins import KEYS, StandIn

TEXT_PROVIDERS = ["serpapi", "brave", "tavily", "searxng"]


class Calls:
    """A meter listener: the outcomes recorded, by provider."""

    def __init__(self, meter: Meter) -> None:
        self.calls: list[ProviderCall] = []
        meter.subscribe(self.calls.append)

    def outcomes(self) -> list[str]:
        return [c.outcome for c in self.calls]


def make(name: str, standin: StandIn, meter: Meter, *, key: str | None = None, timeout_s: float = 5.0) -> Any:
    common: dict[str, Any] = {"meter": meter, "retry": FAST, "timeout_s": timeout_s}
    key = key if key is not None else KEYS.get(name)
    if name == "serpapi":
        return SerpApiGoogle(key, base_url=standin.base, **common)
    if name == "brave":
        return BraveSearch(key, base_url=standin.base, **common)
    if name == "tavily":
        return TavilySearch(key, base_url=standin.base, **common)
    return SearxngSearch(f"{standin.base}/searxng", **common)


@pytest.mark.parametrize("name", TEXT_PROVIDERS)
async def test_text_providers_read_their_documented_answers(name: str, standin: StandIn) -> None:
    meter = Meter()
    calls = Calls(meter)
    results = await make(name, standin, meter).search_text("glass heron", 3)
    assert results.provider == name and len(results.hits) == 3 and not results.cached
    assert all(h.url.startswith(("http://", "https://")) and h.title and h.text for h in results.hits)
    assert "<strong>" not in results.hits[0].title + results.hits[0].text
    assert calls.outcomes() == ["ok"]
    (seen,) = standin.seen(name)
    sent = {
        "serpapi": lambda: (
            (seen.params["engine"], seen.params["q"], seen.params["num"]) == ("google", "glass heron", "3")
        ),
        "brave": lambda: (seen.params["q"], seen.params["count"]) == ("glass heron", "3"),
        "tavily": lambda: (seen.body["query"], seen.body["max_results"]) == ("glass heron", 3),
        "searxng": lambda: (seen.params["q"], seen.params["format"]) == ("glass heron", "json"),
    }[name]
    assert sent()


@pytest.mark.parametrize(("name", "param", "value"), [("serpapi", "gl", "fr"), ("brave", "country", "FR")])
async def test_the_users_country_localises_the_providers_that_take_one(
    name: str, param: str, value: str, standin: StandIn
) -> None:
    provider = make(name, standin, Meter())
    with search_location(SearchLocation(country="fr", city="Lyon")):
        await provider.search_text("glass heron", 3)
    await provider.search_text("glass heron", 3)  # outside a located request: no parameter
    located, plain = standin.seen(name)
    assert located.params[param] == value and param not in plain.params


async def test_brave_strips_highlights_and_serpapi_no_results_is_empty(standin: StandIn) -> None:
    brave = await make("brave", standin, Meter()).search_text("heron", 1)
    assert brave.hits[0].title == "heron & more 1" and brave.hits[0].text == "About heron, result 1."
    empty = await make("serpapi", standin, Meter()).search_text("nothing at all", 5)
    assert empty.hits == [] and empty.provider == "serpapi"


@pytest.mark.parametrize("name", TEXT_PROVIDERS)
@pytest.mark.parametrize(
    ("failure", "retried", "error", "outcome"),
    [
        (429, True, ProviderRateLimited, "rate_limited"),
        (500, True, ProviderUnavailable, "server_error"),
        (503, True, ProviderUnavailable, "server_error"),
        ("timeout", True, ProviderUnavailable, "timeout"),
        ("garbage", False, ProviderResponseError, "bad_response"),
        (400, False, ProviderError, "client_error"),
        (401, False, ProviderAuthError, "auth_error"),
    ],
)
async def test_retries_only_where_allowed(
    name: str, failure: Any, retried: bool, error: type[ProviderError], outcome: str, standin: StandIn
) -> None:
    meter = Meter()
    calls = Calls(meter)
    standin.fail(name, failure)
    # answers take ~2 ms (far more on a loaded machine: 0.1 s was too tight), a "timeout" one 0.6 s
    provider = make(name, standin, meter, timeout_s=0.3)
    if retried:
        results = await provider.search_text("heron", 2)
        assert len(results.hits) == 2
        assert len(standin.seen(name)) == 2
        assert calls.outcomes() == [outcome, "ok"]
    else:
        with pytest.raises(error):
            await provider.search_text("heron", 2)
        assert len(standin.seen(name)) == 1
        assert calls.outcomes() == [outcome]


async def test_gives_up_after_the_last_attempt(standin: StandIn) -> None:
    meter = Meter()
    calls = Calls(meter)
    standin.fail("brave", 502, 502, 502, 502)
    with pytest.raises(ProviderUnavailable, match="brave: server error, HTTP 502"):
        await make("brave", standin, meter).search_text("heron", 2)
    assert len(standin.seen("brave")) == FAST.attempts
    assert Counter(calls.outcomes()) == {"server_error": FAST.attempts}


async def test_missing_or_wrong_key(standin: StandIn) -> None:
    with pytest.raises(SearchError, match="SERPAPI_API_KEY"):
        await make("serpapi", standin, Meter(), key="").search_text("heron", 2)
    assert standin.seen("serpapi") == []
    with pytest.raises(
        ProviderAuthError, match=r"tavily: access refused, HTTP 401: Unauthorized.*check the API key"
    ):
        await make("tavily", standin, Meter(), key="tvly-not-the-right-one").search_text("heron", 2)


@pytest.mark.parametrize("name", ["serpapi", "brave", "tavily"])
async def test_keys_never_show_in_errors_reprs_or_logs(
    name: str, standin: StandIn, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    key = KEYS[name]
    provider = make(name, standin, Meter(), timeout_s=0.3)
    standin.fail(name, "echo-key", 500, 500, 500, "timeout", "timeout", "timeout")
    texts = [repr(provider), str(provider)]
    for _ in range(3):  # echo-key; 500 three times; a timeout three times
        with pytest.raises(ProviderError) as info:
            await provider.search_text("heron", 2)
        exc = info.value
        texts += [str(exc), repr(exc), "".join(traceback.format_exception(exc))]
    await provider.search_text("heron", 2)
    assert "retrying after attempt" in caplog.text  # the failures were logged...
    assert key not in caplog.text  # ...masked
    for text in texts:
        assert key not in text
    assert "is not allowed here" in texts[2]  # the provider's message is kept, the key in it masked


async def test_lens_publishes_an_uploaded_image_only_for_the_call(standin: StandIn) -> None:
    publisher = ImagePublisher("http://gateway.example", ttl_s=60)
    during: list[bool] = []
    standin.on_lens_url = lambda url: during.append(publisher.get(url.rsplit("/", 1)[-1]) is not None)
    lens = SerpApiLens(
        KEYS["serpapi"], base_url=standin.base, publisher=publisher, fetcher=thumbnail_fetcher(["127.0.0.1"]),
        retry=FAST,
    )  # fmt: skip
    image = await load_image(encode_image(Image.new("RGB", (300, 200), (1, 2, 3))))
    results = await lens.search_image(image, 7)
    (seen,) = standin.seen("serpapi")
    assert seen.params["engine"] == "google_lens"
    assert seen.params["url"].startswith("http://gateway.example/public/images/")
    assert during == [True] and len(publisher) == 0  # served during the call, gone after it
    assert [h.title for h in results.hits] == [f"Match {i}" for i in range(1, 7)] + ["Private"]
    thumbs = [h.thumbnail_image() for h in results.hits]
    assert thumbs[1] is None and thumbs[6] is None  # not an image; a private address (never fetched)
    for thumb in (t for i, t in enumerate(thumbs) if i not in (1, 6)):
        assert thumb is not None and thumb.width * thumb.height <= THUMBNAIL_PIXELS
    assert sorted(r.path for r in standin.seen("thumbs")) == [f"/thumbs/{i}.jpg" for i in range(1, 7)]
    standin.fail("serpapi", 401)
    with pytest.raises(ProviderAuthError):
        await lens.search_image(image, 3)
    assert len(publisher) == 0  # unpublished when the search fails too


async def test_lens_uses_a_public_image_url_and_fails_clearly_without_one(standin: StandIn) -> None:
    lens = SerpApiLens(KEYS["serpapi"], base_url=standin.base, retry=FAST)
    image = await load_image(encode_image(Image.new("RGB", (8, 8))))
    with pytest.raises(SearchError, match="public-base-url"):
        await lens.search_image(image, 3)
    assert standin.seen("serpapi") == []
    public = InputImage(image.image, image.data, image.sha256, url="https://pics.example/heron.jpg")
    results = await lens.search_image(public, 3)
    assert standin.seen("serpapi")[0].params["url"] == "https://pics.example/heron.jpg"
    assert len(results.hits) == 3 and results.provider == "serpapi-lens"


class FakeDDGS:
    """Plays ``ddgs.DDGS``: each call pops the next outcome (rows, or an exception to raise)."""

    def __init__(self, *outcomes: Any) -> None:
        self.outcomes = deque(outcomes)
        self.calls: list[dict[str, Any]] = []

    def text(self, query: str, **kwargs: Any) -> list[dict[str, Any]]:
        self.calls.append({"query": query, **kwargs})
        outcome = self.outcomes.popleft()
        if isinstance(outcome, Exception):
            raise outcome
        return list(outcome)


async def test_duckduckgo_through_ddgs() -> None:
    from ddgs.exceptions import DDGSException, RatelimitException

    rows = [{"title": f"T{i}", "href": f"https://d.example/{i}", "body": f"B{i}"} for i in range(4)]
    fake = FakeDDGS(RatelimitException("202 Ratelimit"), rows, DDGSException("No results found."))
    meter = Meter()
    calls = Calls(meter)
    ddg = DuckDuckGoSearch(meter=meter, retry=FAST, client_factory=lambda: fake)
    results = await ddg.search_text("heron", 3)
    assert [(h.title, h.url, h.text) for h in results.hits] == [
        (f"T{i}", f"https://d.example/{i}", f"B{i}") for i in range(3)
    ]
    sent = {"query": "heron", "max_results": 3, "backend": "duckduckgo", "region": "us-en"}
    assert fake.calls[0] == {**sent, "safesearch": "moderate"}
    assert calls.outcomes() == ["rate_limited", "ok"]
    assert (await ddg.search_text("nothing", 3)).hits == []
    failing = DuckDuckGoSearch(retry=FAST, client_factory=lambda: FakeDDGS(*[DDGSException("boom")] * 3))
    with pytest.raises(ProviderUnavailable, match="duckduckgo: search failed: boom"):
        await failing.search_text("heron", 3)
