"""Streaming chat completions: chunk order, reasoning and search progress, usage, errors."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from mmsr_serve.backends import ScriptedBackend
from mmsr_serve.errors import BackendError
from mmsr_serve.search.local import LocalIndex
from tests.api.conftest import AppClient, R, user_with_image


async def stream(client: httpx.AsyncClient, body: dict[str, Any]) -> tuple[int, list[Any]]:
    """The status and the ``data:`` payloads of a streamed response ("[DONE]" kept as a string)."""
    response = await client.post("/v1/chat/completions", json={"stream": True, **body})
    events: list[Any] = []
    for line in response.text.splitlines():
        if line.startswith("data: "):
            payload = line[len("data: ") :]
            events.append(payload if payload == "[DONE]" else json.loads(payload))
    return response.status_code, events


def joined(chunks: list[dict[str, Any]], field: str) -> str:
    return "".join(c["choices"][0]["delta"].get(field) or "" for c in chunks if c.get("choices"))


async def test_chunk_order_reasoning_searches_answer_usage(
    app_client: AppClient, local_index: LocalIndex, doc: dict[str, Any], doc_image_url: str
) -> None:
    backend = ScriptedBackend(
        [
            "<reason>I do not recognise this object.</reason><search><img></search>",
            f"{R}<text_search>{doc['title']}</text_search>",
            f"<reason>The page says it.</reason><answer>{doc['title']}</answer>",
        ]
    )
    client = app_client(backend, local_index)
    body = {
        "messages": [user_with_image("What is this?", doc_image_url)],
        "stream_options": {"include_usage": True},
        "return_trace": True,
    }
    status, events = await stream(client, body)
    assert status == 200
    assert events[-1] == "[DONE]"
    chunks = events[:-1]
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert len({c["id"] for c in chunks}) == 1
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    usage_chunk, finish_chunk = chunks[-1], chunks[-2]
    assert usage_chunk["choices"] == [] and usage_chunk["usage"]["search_calls"] == {"image": 1, "text": 1}
    assert finish_chunk["choices"][0]["finish_reason"] == "stop"
    assert doc["url"] in [
        a["url_citation"]["url"] for a in finish_chunk["choices"][0]["delta"]["annotations"]
    ]
    assert finish_chunk["search_results"] and finish_chunk["trace"]["steps"][-1]["type"] == "finish"
    assert all(c["choices"][0]["finish_reason"] is None for c in chunks[:-2])
    assert joined(chunks, "content") == doc["title"]
    reasoning = joined(chunks, "reasoning_content")
    assert reasoning == "I do not recognise this object.\n\nthinking it over\n\nThe page says it."
    assert joined(chunks, "reasoning") == reasoning
    deltas = [c["choices"][0]["delta"] for c in chunks[:-1]]
    searches = [event for d in deltas for event in d.get("search_events", [])]
    assert [s["index"] for s in searches] == [0, 1, 2, 3]
    assert [(s["status"], s["kind"]) for s in searches] == [
        ("started", "image"),
        ("finished", "image"),
        ("started", "text"),
        ("finished", "text"),
    ]
    assert searches[2]["query"] == doc["title"]
    assert searches[3]["results"][0]["url"] == doc["url"] and searches[3]["provider"] == "local"
    # reasoning arrives before the search it leads to, the answer after the last search
    kinds = [next(iter(c["choices"][0]["delta"]), None) for c in chunks[1:-2]]
    assert kinds.index("search_events") > kinds.index("reasoning_content")
    assert kinds.index("content") > len(kinds) - 1 - kinds[::-1].index("search_events")


@pytest.mark.parametrize(
    "turn",
    [
        "<reason>  spaced   reasoning  </reason>  <answer> Paris </answer>",
        "<reason>It is the Belem tower, so <answer>Lisbon</answer>",  # </reason> forgotten
    ],
)
async def test_streamed_fields_equal_the_non_streamed_ones(app_client: AppClient, turn: str) -> None:
    client = app_client(ScriptedBackend([turn, turn]))
    body = {"messages": [{"role": "user", "content": "Q?"}]}
    full = (await client.post("/v1/chat/completions", json=body)).json()["choices"][0]["message"]
    _, events = await stream(client, body)
    assert joined(events[:-1], "content") == full["content"] in ("Paris", "Lisbon")
    assert joined(events[:-1], "reasoning_content") == full["reasoning_content"]


async def test_off_mode_streams_content_live_and_honours_stop(app_client: AppClient) -> None:
    client = app_client(ScriptedBackend(["  The capital is Paris. Next question"]))
    body = {"messages": [{"role": "user", "content": "Q?"}], "search_mode": "off", "stop": "Next"}
    _, events = await stream(client, body)
    pieces = [
        c["choices"][0]["delta"]["content"] for c in events[1:-1] if c["choices"][0]["delta"].get("content")
    ]
    assert len(pieces) > 2  # live, not in one piece
    assert "".join(pieces) == "The capital is Paris. "
    assert events[-2]["choices"][0]["finish_reason"] == "stop"
    assert "usage" not in events[-2]


async def test_backend_failure_before_output_is_an_http_error(app_client: AppClient) -> None:
    client = app_client(ScriptedBackend([BackendError("vLLM is down")]))
    response = await client.post(
        "/v1/chat/completions", json={"stream": True, "messages": [{"role": "user", "content": "Q?"}]}
    )
    assert response.status_code == 502
    assert response.json()["error"] == {
        "message": "vLLM is down",
        "type": "backend_error",
        "param": None,
        "code": "backend_error",
    }


async def test_error_after_the_stream_started_is_an_error_event(app_client: AppClient) -> None:
    client = app_client(ScriptedBackend(["<reason>hmm</reason>", BackendError("replica lost")]))
    status, events = await stream(client, {"messages": [{"role": "user", "content": "Q?"}]})
    assert status == 200
    assert events[-1] == "[DONE]"
    assert events[-2] == {
        "error": {"message": "replica lost", "type": "backend_error", "param": None, "code": "backend_error"}
    }


async def test_n_choices_stream_with_their_indexes(app_client: AppClient) -> None:
    client = app_client(ScriptedBackend([f"{R}<answer>A</answer>", f"{R}<answer>B</answer>"]))
    _, events = await stream(client, {"messages": [{"role": "user", "content": "Q?"}], "n": 2})
    finishes = {c["choices"][0]["index"]: c for c in events[:-1] if c["choices"][0]["finish_reason"]}
    assert set(finishes) == {0, 1}
    roles = [c["choices"][0]["index"] for c in events[:2]]
    assert roles == [0, 1]
