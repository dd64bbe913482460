"""openai-python, unchanged, against a live ``mmsr serve`` app on loopback whose backend is
OpenAIBackend talking to a stand-in vLLM (which strips stop strings and reports ``stop_reason``)."""

from __future__ import annotations

from typing import Any

import openai
import pytest

from mmsr_serve.agent.parser import STOP_STRINGS
from tests.api.conftest import KEY, messages
from tests.api.live import LiveServer
from tests.api.model_server import MODEL, ModelServer

pytestmark = pytest.mark.slow  # a live gateway and a stand-in vLLM on loopback per test


def check_completion(completion: Any, answer: str, doc: dict[str, Any]) -> None:
    choice = completion.choices[0]
    assert choice.message.content == answer
    assert choice.finish_reason == "stop"
    assert completion.usage.total_tokens > 0
    extra = completion.model_extra
    assert completion.usage.model_extra["search_calls"] == {"image": 1, "text": 1}
    assert doc["url"] in [a.url_citation.url for a in choice.message.annotations]
    assert choice.message.model_extra["reasoning_content"].startswith("I cannot tell what this is.")
    assert [s["action"] for s in extra["trace"]["steps"] if s["type"] == "turn"] == [
        "image_search",
        "text_search",
        "answer",
    ]
    assert any(r["url"] == doc["url"] for r in extra["search_results"])


def test_sync_client(
    gateway: LiveServer, model_server: ModelServer, scripted: str, doc: dict[str, Any], doc_image_url: str
) -> None:
    client = openai.OpenAI(base_url=gateway.url + "/v1", api_key=KEY, timeout=20, max_retries=0)
    assert [m.id for m in client.models.list()] == [MODEL]
    completion = client.chat.completions.create(
        model=MODEL,
        messages=messages(doc_image_url),
        extra_body={"return_trace": True},  # type: ignore[arg-type]
    )
    check_completion(completion, scripted, doc)
    # the stand-in stripped the closing tags; the loop restored them and acted on them
    assert len(model_server.requests) == 3
    assert all(set(r["stop"]) == set(STOP_STRINGS) for r in model_server.requests)
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=gateway.url + "/v1", api_key="wrong", max_retries=0).models.list()


async def test_async_client(
    gateway: LiveServer, scripted: str, doc: dict[str, Any], doc_image_url: str
) -> None:
    async with openai.AsyncOpenAI(
        base_url=gateway.url + "/v1", api_key=KEY, timeout=20, max_retries=0
    ) as client:
        completion = await client.chat.completions.create(
            model=MODEL,
            messages=messages(doc_image_url),  # type: ignore[arg-type]
            extra_body={"return_trace": True},
        )
    check_completion(completion, scripted, doc)


def test_streaming_with_usage(
    gateway: LiveServer, scripted: str, doc: dict[str, Any], doc_image_url: str
) -> None:
    client = openai.OpenAI(base_url=gateway.url + "/v1", api_key=KEY, timeout=20, max_retries=0)
    chunks = list(
        client.chat.completions.create(
            model=MODEL,
            messages=messages(doc_image_url),  # type: ignore[arg-type]
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    content = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert content == scripted
    reasoning = "".join(
        (c.choices[0].delta.model_extra or {}).get("reasoning_content") or "" for c in chunks if c.choices
    )
    assert reasoning.startswith("I cannot tell what this is.\n\nIt is ")
    searches = [
        event
        for c in chunks
        if c.choices
        for event in (c.choices[0].delta.model_extra or {}).get("search_events") or []
    ]
    assert [s["status"] + ":" + s["kind"] for s in searches] == [
        "started:image",
        "finished:image",
        "started:text",
        "finished:text",
    ]
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.model_extra["num_search_queries"] == 2
    assert chunks[-2].choices[0].finish_reason == "stop"


def test_search_mode_off_through_the_wire(gateway: LiveServer, model_server: ModelServer) -> None:
    model_server.enqueue("Paris.")
    client = openai.OpenAI(base_url=gateway.url + "/v1", api_key=KEY, timeout=20, max_retries=0)
    completion = client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "Capital of France?"}],
        extra_body={"search_mode": "off"},
    )
    assert completion.choices[0].message.content == "Paris."
    sent = model_server.requests[-1]
    assert "stop" not in sent
    assert sent["messages"] == [{"role": "user", "content": "Capital of France?"}]


def test_backend_errors_reach_the_client(gateway: LiveServer, model_server: ModelServer) -> None:
    model_server.enqueue(*[500] * 4)  # a 5xx from vLLM: retried, then 502
    client = openai.OpenAI(base_url=gateway.url + "/v1", api_key=KEY, timeout=20, max_retries=0)
    with pytest.raises(openai.APIStatusError) as caught:
        client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "Q?"}])
    assert caught.value.status_code == 502
    assert caught.value.body["type"] == "backend_error"  # type: ignore[index]
    model_server.enqueue(400)  # a 4xx is the request's: not retried, a 400 (tests/api/test_backend_errors.py)
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "Q?"}])
