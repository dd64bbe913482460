"""The benchmark stand-ins: the latency forms, the protocol the model stand-in plays (through
httpx, openai-python and mmsr's own agent), vLLM's stop and stream behaviour, the counters, and the
web stand-in under mmsr's real SearXNG provider and page reader. Servers run on 127.0.0.1."""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from mmsr_bench.standins import (
    ModelConfig,
    WebConfig,
    model_app,
    parse_latency,
    parse_mix,
    serve_standin,
    web_app,
)
from mmsr_bench.standins.latency import FORMS, Latency
from mmsr_bench.standins.model import cut_reply
from mmsr_bench.standins.play import play
from mmsr_serve.agent import SearchAgent
from mmsr_serve.agent.parser import STOP_STRINGS, parse_turn, restore_stop
from mmsr_serve.api import Settings, create_app
from mmsr_serve.config import AgentConfig
from mmsr_serve.search.base import TextHit
from mmsr_serve.search.reader import LocalReader
from mmsr_serve.search.searxng import SearxngSearch
from tests.corpus_fixture import read_docs

MODEL = "mmsr-standin"
QUESTION = "Question: Who designed the glass heron in the harbour of Quillby?"


@pytest.fixture(scope="module")
def web_url() -> Iterator[str]:
    with serve_standin(web_app(WebConfig(latency="1ms", page_latency="1ms"))) as url:
        yield url


def model_server(**options: Any) -> Any:
    return serve_standin(model_app(ModelConfig(**options)))


@pytest.fixture(scope="module")
def http() -> Iterator[httpx.Client]:
    """One client for the plain requests (a client per call would build an SSL context each time)."""
    with httpx.Client(timeout=5, trust_env=False) as client:
        yield client


def chat(http: httpx.Client, url: str, messages: list[dict[str, Any]], **body: Any) -> dict[str, Any]:
    payload = {"model": MODEL, "messages": messages, **body}
    answer = http.post(url + "/v1/chat/completions", json=payload)
    answer.raise_for_status()
    result: dict[str, Any] = answer.json()
    return result


def client_loop(http: httpx.Client, url: str, question: str, max_turns: int = 5) -> list[str]:
    """A hand-written search loop: the actions the model took, up to its answer."""
    messages: list[dict[str, Any]] = [{"role": "user", "content": question}]
    actions: list[str] = []
    for _ in range(max_turns):
        choice = chat(http, url, messages, stop=list(STOP_STRINGS))["choices"][0]
        text = choice["message"]["content"] + (choice["stop_reason"] or "")
        parsed = parse_turn(text)
        actions.append(parsed.action)
        if parsed.action == "answer":
            break
        assert parsed.action != "text_search" or parsed.query
        messages += [
            {"role": "assistant", "content": text},
            {"role": "user", "content": "<information>1. A result</information>"},
        ]
    return actions


# ------------------------------------------------------------------------------- latency


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("0", Latency("fixed", 0.0)),
        ("50ms", Latency("fixed", 0.05)),
        ("0.05", Latency("fixed", 0.05)),
        ("800us", Latency("fixed", 0.0008)),
        ("exp:50ms", Latency("exp", 0.05)),
        ("lognormal:50ms:0.5", Latency("lognormal", 0.05, 0.5)),
        ("uniform:20ms:80ms", Latency("uniform", 0.02, 0.08)),
        ("normal:50ms:10ms", Latency("normal", 0.05, 0.01)),
    ],
)
def test_latency_forms(spec: str, expected: Latency) -> None:
    latency = parse_latency(spec)
    assert latency.kind == expected.kind
    assert latency.a == pytest.approx(expected.a) and latency.b == pytest.approx(expected.b)
    assert parse_latency(str(latency)) == latency  # str() writes a form the parser reads
    rng = random.Random(0)
    draws = [latency.sample(rng) for _ in range(2000)]
    assert min(draws) >= 0
    if latency.kind == "uniform":
        assert min(draws) >= 0.02 and max(draws) <= 0.08
    if latency.kind != "fixed":
        assert sum(draws) / len(draws) == pytest.approx(latency.mean_s, rel=0.1)
    assert latency.sample(random.Random(1)) == latency.sample(random.Random(1))  # seeded: repeatable


def test_normal_latency_is_clamped_at_zero() -> None:
    rng = random.Random(0)
    assert min(parse_latency("normal:1ms:50ms").sample(rng) for _ in range(200)) == 0.0


@pytest.mark.parametrize("bad", ["", "fast", "50 minutes", "exp", "exp:1:2", "gamma:5ms", "uniform:9ms:1ms"])
def test_bad_latency_names_the_forms(bad: str) -> None:
    with pytest.raises(ValueError, match="bad latency") as caught:
        parse_latency(bad)
    assert FORMS in str(caught.value)


def test_bad_mix_and_config() -> None:
    with pytest.raises(ValueError, match="unknown trajectory 'video'"):
        parse_mix("video=1")
    with pytest.raises(ValueError, match="no trajectory a weight"):
        parse_mix("direct=0")
    with pytest.raises(ValueError, match="bad latency"):
        ModelConfig(latency="soon")


# ------------------------------------------------------------------------------- the protocol


def test_the_mix_decides_the_trajectory_and_the_question_keeps_it() -> None:
    mix = parse_mix("direct=1,image=1,image_text=1")
    seen = {play([{"role": "user", "content": f"question {i}"}], mix).trajectory for i in range(60)}
    assert seen == {"direct", "image", "image_text"}
    messages = [{"role": "user", "content": [{"type": "text", "text": QUESTION}, {"type": "image_url"}]}]
    first = play(messages, mix, seed=3)
    assert play(messages, mix, seed=3) == first  # stable: a hash, not a draw
    assert parse_turn(play(messages, parse_mix("text=1")).text).query == "Who designed the glass heron in"


def test_client_loop_follows_the_mix(http: httpx.Client) -> None:
    for mix, expected in [
        ("direct=1", ["answer"]),
        ("image=1", ["image_search", "answer"]),
        ("image_text=1", ["image_search", "text_search", "answer"]),
    ]:
        with model_server(mix=mix, reasoning_words=5) as url:
            assert client_loop(http, url, QUESTION) == expected


def test_extra_turns_get_an_answer() -> None:
    mix = parse_mix("image=1")
    messages: list[dict[str, Any]] = [{"role": "user", "content": QUESTION}]
    messages += [{"role": "assistant", "content": "x"}, {"role": "user", "content": "y"}] * 4
    turn = play(messages, mix)
    assert (turn.turn, turn.action) == (5, "answer")


# ------------------------------------------------------------------------------- vLLM's wire


def test_cut_reply_like_vllm() -> None:
    text = "<reason>a b c</reason><search><img></search>"
    reply = cut_reply(text, ["</answer>", "</search>"], None)
    assert (reply.text, reply.finish_reason, reply.stop_reason) == (
        "<reason>a b c</reason><search><img>",
        "stop",
        "</search>",
    )
    assert cut_reply(text, ["</search>"], None, include_stop=True).text == text
    short = cut_reply(text, ["</search>"], 2)
    assert (short.text, short.finish_reason, short.stop_reason) == ("<reason>a b", "length", None)
    assert cut_reply(text, [], None).stop_reason is None


def test_stop_reason_and_max_tokens_on_the_wire(http: httpx.Client) -> None:
    with model_server(mix="image=1", reasoning_words=8) as url:
        messages = [{"role": "user", "content": QUESTION}]
        done = chat(http, url, messages, stop=list(STOP_STRINGS))
        choice = done["choices"][0]
        assert choice["finish_reason"] == "stop" and choice["stop_reason"] == "</search>"
        assert choice["message"]["content"].endswith("<search><img>")
        assert restore_stop(choice["message"]["content"], "stop").endswith("<search><img></search>")
        assert done["usage"]["completion_tokens"] == 8  # words; the tags are glued to the first and last
        assert done["usage"]["total_tokens"] == done["usage"]["prompt_tokens"] + 8
        kept = chat(http, url, messages, stop=["</search>"], include_stop_str_in_output=True)["choices"][0]
        assert kept["message"]["content"].endswith("</search>")
        cut = chat(http, url, messages, stop=list(STOP_STRINGS), max_tokens=3)
        choice = cut["choices"][0]
        assert (choice["finish_reason"], choice["stop_reason"]) == ("length", None)
        assert len(choice["message"]["content"].split()) == cut["usage"]["completion_tokens"] == 3
        wrong = http.post(url + "/v1/chat/completions", json={"model": "gpt-4", "messages": messages})
        assert wrong.status_code == 404 and "does not exist" in wrong.json()["error"]["message"]


@pytest.mark.parametrize("tokens_per_s", [0.0, 5000.0])
async def test_streaming_through_openai_python(tokens_per_s: float) -> None:
    with model_server(mix="image_text=1", latency="2ms", tokens_per_s=tokens_per_s) as url:
        async with openai.AsyncOpenAI(base_url=url + "/v1", api_key="EMPTY", max_retries=0) as client:
            assert [m.id async for m in client.models.list()] == [MODEL]
            messages: Any = [{"role": "user", "content": QUESTION}]
            stream = await client.chat.completions.create(
                model=MODEL,
                messages=messages,
                stop=list(STOP_STRINGS),
                stream=True,
                stream_options={"include_usage": True},
            )
            chunks = [chunk async for chunk in stream]
            whole = await client.chat.completions.create(
                model=MODEL, messages=messages, stop=list(STOP_STRINGS)
            )
    assert chunks[0].choices[0].delta.role == "assistant"
    content = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert content == whole.choices[0].message.content
    assert len([c for c in chunks if c.choices and c.choices[0].delta.content]) > 2
    finish = chunks[-2].choices[0]
    assert finish.finish_reason == "stop" and (finish.model_extra or {})["stop_reason"] == "</search>"
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert whole.usage is not None and chunks[-1].usage.completion_tokens == whole.usage.completion_tokens
    assert len({c.id for c in chunks}) == 1


def test_latency_is_the_time_to_the_answer(http: httpx.Client) -> None:
    with model_server(latency="40ms") as url:
        started = time.perf_counter()
        chat(http, url, [{"role": "user", "content": QUESTION}])
        assert time.perf_counter() - started >= 0.04


def test_stats_count_and_reset(http: httpx.Client) -> None:
    with model_server(mix="image_text=1", reasoning_words=4, image_tokens=100) as url:
        assert http.get(url + "/health").status_code == 200
        image = {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}
        user = {"role": "user", "content": [{"type": "text", "text": "x" * 40}, image]}
        first = chat(http, url, [user], stop=list(STOP_STRINGS))
        assert first["usage"]["prompt_tokens"] == 10 + 100
        reply = {"role": "assistant", "content": "a"}
        body = {"model": MODEL, "messages": [user, reply, {"role": "user", "content": "r"}], "stream": True}
        streamed = http.post(url + "/v1/chat/completions", json=body)
        assert streamed.headers["content-type"].startswith("text/event-stream")
        assert streamed.text.endswith("data: [DONE]\n\n")
        http.post(url + "/v1/chat/completions", content=b"not json")
        stats = http.get(url + "/standin/stats").json()
        assert stats["requests"] == 2 and stats["streamed"] == 1 and stats["errors"] == 1
        assert stats["by_trajectory"] == {"image_text": 1} and stats["by_turn"] == {"1": 1, "2": 1}
        assert stats["prompt_tokens"] > 110 and stats["completion_tokens"] > 0
        assert stats["in_flight"] == 0 and stats["max_in_flight"] >= 1
        assert set(stats["loop_lag_ms"]) == {"p50", "p99", "max"} and isinstance(stats["saturated"], bool)
        cleared = http.post(url + "/standin/reset").json()
        assert cleared["requests"] == cleared["completion_tokens"] == 0 and cleared["by_turn"] == {}


# ------------------------------------------------------------------------------- the web stand-in


async def test_searxng_provider_and_page_reader_against_the_web_standin(web_url: str) -> None:
    search = SearxngSearch(web_url)
    try:
        results = await search.search_text("glass heron designer", k=10)
        assert len(results.hits) == 5
        assert len((await search.search_text("glass heron designer", k=3)).hits) == 3
        again = await search.search_text("glass heron designer", k=10)
    finally:
        await search.aclose()
    assert [h.url for h in again.hits] == [h.url for h in results.hits]
    hit = results.hits[0]
    assert isinstance(hit, TextHit)
    assert hit.url.startswith(web_url + "/pages/") and "glass heron" in hit.text
    reader = LocalReader(allow=["127.0.0.1"])
    try:
        page = await reader.read(hit.url)
    finally:
        await reader.aclose()
    assert "Glass Heron Designer" in page.title and "glass heron designer" in page.text
    assert "newsletter" not in page.text  # the menu is boilerplate
    async with httpx.AsyncClient(base_url=web_url, timeout=5) as http:
        assert (await http.get("/search", params={"q": "x", "format": "html"})).status_code == 403
        assert (await http.get("/pages/9-eA.html")).status_code == 404
        stats = (await http.get("/standin/stats")).json()
    assert stats["searches"] >= 3 and stats["pages"] >= 1 and stats["in_flight"] == 0


# ------------------------------------------------------------------------------- end to end


async def test_mmsr_agent_runs_the_trajectory_on_the_standins(corpus_dir: Path, web_url: str) -> None:
    doc = read_docs(corpus_dir)[0]
    with model_server(mix="image_text=1", reasoning_words=10) as url:
        config = AgentConfig(
            backend="openai",
            backend_urls=[url + "/v1"],
            model=MODEL,
            index=corpus_dir,
            image_search=["local"],
            text_search=["searxng"],
            providers={"searxng": {"base_url": web_url}},
            search_cache="off",
            fetch_allow=["127.0.0.1"],
        )
        backend, tools = config.build_backend(), config.build_search()
        try:
            agent = SearchAgent(
                backend, image_search=tools.image, text_search=tools.text, limits=config.limits()
            )
            result = await agent.run("Who designed this?", image=corpus_dir / doc["image"])
        finally:
            await tools.aclose()
            await backend.aclose()
        async with httpx.AsyncClient(timeout=5) as http:
            stats = (await http.get(url + "/standin/stats")).json()
    assert result.finish_reason == "stop" and result.answer
    assert [t.parsed.action for t in result.turns] == ["image_search", "text_search", "answer"]
    assert result.search_calls == {"image": 1, "text": 1}
    image_search, text_search = result.searches
    assert image_search.error is None and image_search.hits[0].url == doc["url"]
    assert text_search.error is None and text_search.query == "Who designed this?"
    assert text_search.hits and all(h.url.startswith(web_url) for h in text_search.hits)
    assert stats["by_turn"] == {"1": 1, "2": 1, "3": 1} and stats["streamed"] == 3


def test_mmsr_serve_over_the_model_standin(corpus_dir: Path) -> None:
    """The real server (OpenAIBackend inside) answers an openai-python client after a text search."""
    doc = read_docs(corpus_dir)[0]
    with model_server(mix="text=1", reasoning_words=10) as url:
        settings = Settings(model=MODEL, backend_urls=[url + "/v1"], index=corpus_dir, backend_timeout_s=10)
        with serve_standin(create_app(settings)) as gateway:
            client = openai.OpenAI(base_url=gateway + "/v1", api_key="EMPTY", timeout=10, max_retries=0)
            completion = client.chat.completions.create(
                model=MODEL, messages=[{"role": "user", "content": f"Who designed {doc['title']}?"}]
            )
    choice = completion.choices[0]
    assert choice.finish_reason == "stop" and choice.message.content
    assert completion.usage is not None and completion.usage.model_extra is not None
    assert completion.usage.model_extra["search_calls"] == {"image": 0, "text": 1}
