"""Our streaming extras through the official clients' own accumulation, against a live gateway:
openai-python's ``client.chat.completions.stream()`` helper, LangChain's chunk merging and
LiteLLM's ``stream_chunk_builder``, on runs with several searches."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import openai
import pytest

from mmsr_serve.api import Settings, create_app
from tests.api.conftest import KEY, messages
from tests.api.live import LiveServer
from tests.api.model_server import MODEL, ModelServer

pytestmark = pytest.mark.slow  # live gateway + stand-in per test; LiteLLM in a child process


@pytest.fixture
def three_searches(model_server: ModelServer, doc: dict[str, Any]) -> str:
    """Image search, two text searches, then the answer (four turns); returns the answer."""
    answer = doc["text"].split("designed by ")[1].split(" and ")[0]
    model_server.enqueue(
        "<reason>I cannot tell what this is.</reason><search><img></search>",
        f"<reason>It is {doc['title']}.</reason><text_search>{doc['title']}</text_search>",
        f"<reason>Now the designer.</reason><text_search>{doc['title']} designer</text_search>",
        f"<reason>The page names the designer.</reason><answer>{answer}</answer>",
    )
    return answer


@pytest.fixture
def four_turns(model_server: ModelServer, corpus_dir: Path, live_app: Callable[..., LiveServer]) -> str:
    """A live gateway that allows four turns; returns its ``/v1`` URL."""
    settings = Settings(
        model=MODEL, backend_urls=[model_server.url], index=corpus_dir, api_keys=[KEY], max_turns=4
    )
    return live_app(create_app(settings)).url + "/v1"


def test_openai_stream_helper_accumulates_two_searches(
    gateway: LiveServer, scripted: str, doc_image_url: str
) -> None:
    client = openai.OpenAI(base_url=gateway.url + "/v1", api_key=KEY, timeout=20, max_retries=0)
    with client.chat.completions.stream(model=MODEL, messages=messages(doc_image_url)) as stream:  # type: ignore[arg-type]
        kinds = [event.type for event in stream]
        final = stream.get_final_completion()
    assert kinds[-1] == "content.done"
    message = final.choices[0].message
    assert message.content == scripted and final.choices[0].finish_reason == "stop"
    events = (message.model_extra or {})["search_events"]
    assert [(e["index"], e["status"], e["kind"]) for e in events] == [
        (0, "started", "image"),
        (1, "finished", "image"),
        (2, "started", "text"),
        (3, "finished", "text"),
    ]
    assert events[3]["results"] and events[3]["provider"] == "local"
    assert (message.model_extra or {})["reasoning_content"].startswith("I cannot tell what this is.\n\n")


async def test_openai_async_stream_helper_with_three_searches(
    four_turns: str, three_searches: str, doc_image_url: str
) -> None:
    async with (
        openai.AsyncOpenAI(base_url=four_turns, api_key=KEY, timeout=20, max_retries=0) as client,
        client.chat.completions.stream(
            model=MODEL,
            messages=messages(doc_image_url),  # type: ignore[arg-type]
            stream_options={"include_usage": True},
        ) as stream,
    ):
        final = await stream.get_final_completion()
    message = final.choices[0].message
    assert message.content == three_searches
    events = (message.model_extra or {})["search_events"]
    assert [e["status"][0] + e["kind"][0] for e in events] == ["si", "fi", "st", "ft", "st", "ft"]
    assert [e["query"] for e in events if e["kind"] == "text"][-1].endswith(" designer")
    assert final.usage is not None and (final.usage.model_extra or {})["num_search_queries"] == 3


def test_langchain_streams_and_merges_chunks(gateway: LiveServer, scripted: str, doc_image_url: str) -> None:
    from langchain_core.messages import AIMessageChunk
    from langchain_openai import ChatOpenAI

    chat = ChatOpenAI(model=MODEL, base_url=gateway.url + "/v1", api_key=KEY, max_retries=0, timeout=20)  # type: ignore[arg-type]
    chunks = list(chat.stream(messages(doc_image_url)))
    merged = chunks[0]
    for chunk in chunks[1:]:
        merged += chunk
    assert merged.content == scripted
    # LangChain's merge rules (strings concatenate, lists merge by "index") keep our events apart
    raw = [
        {"index": 0, "status": "started", "kind": "image", "query": None, "turn": 1},
        {"index": 1, "status": "finished", "kind": "image", "results": [{"url": "u1"}]},
        {"index": 2, "status": "started", "kind": "text", "query": "q", "turn": 2},
        {"index": 3, "status": "finished", "kind": "text", "results": [{"url": "u2"}]},
    ]
    pieces = [AIMessageChunk(content="", additional_kwargs={"search_events": [e]}) for e in raw]
    total = pieces[0]
    for piece in pieces[1:]:
        total += piece
    assert total.additional_kwargs["search_events"] == raw


LITELLM = """
import json, sys
import litellm

url, key, model, image_url = sys.argv[1:]
messages = [{"role": "user", "content": [{"type": "text", "text": "Who designed this?"},
                                         {"type": "image_url", "image_url": {"url": image_url}}]}]
chunks = list(litellm.completion(model="openai/" + model, api_base=url, api_key=key, messages=messages,
                                 stream=True, timeout=20, max_retries=0))
built = litellm.stream_chunk_builder(chunks)
print(json.dumps({"chunks": len(chunks), "content": built.choices[0].message.content}))
"""


def test_litellm_stream_chunk_builder(gateway: LiveServer, scripted: str, doc_image_url: str) -> None:
    # In a child process: importing litellm retunes the process's loggers (httpx, uvicorn, asyncio).
    env = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True"}  # no fetch of its price map at import
    url = gateway.url + "/v1"
    out = subprocess.run(
        [sys.executable, "-c", LITELLM, url, KEY, MODEL, doc_image_url],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["content"] == scripted and result["chunks"] > 4
