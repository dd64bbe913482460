"""``/v1/responses``: the Responses API over the same loop, its output items, its streaming events
(through openai-python's own accumulation) and its refusals."""

from __future__ import annotations

import json
from typing import Any

import httpx
import openai
import pytest

from mmsr_serve.api.responses_request import ResponsesRequest, to_chat
from mmsr_serve.backends import ScriptedBackend
from mmsr_serve.errors import BackendError, InvalidInputError
from mmsr_serve.search.local import LocalIndex
from tests.api.conftest import KEY, AppClient
from tests.api.live import LiveServer
from tests.api.model_server import MODEL, ModelServer


def turns(doc: dict[str, Any]) -> list[str]:
    return [
        "<reason>I do not recognise this object.</reason><search><img></search>",
        f"<reason>It is {doc['title']}.</reason><text_search>{doc['title']}</text_search>",
        f"<reason>The page says it.</reason><answer>{doc['title']}</answer>",
    ]


def ask(image_url: str, **extra: Any) -> dict[str, Any]:
    content = [
        {"type": "input_text", "text": "What is this?"},
        {"type": "input_image", "image_url": image_url},
    ]
    return {"input": [{"role": "user", "content": content}], **extra}


async def events_of(client: httpx.AsyncClient, body: dict[str, Any]) -> list[dict[str, Any]]:
    response = await client.post("/v1/responses", json={**body, "stream": True})
    assert response.status_code == 200
    lines = response.text.splitlines()
    names = [line[len("event: ") :] for line in lines if line.startswith("event: ")]
    events = [json.loads(line[len("data: ") :]) for line in lines if line.startswith("data: ")]
    assert names == [e["type"] for e in events]  # each event named as its data's type
    return events


async def test_output_items_follow_the_run(
    app_client: AppClient, local_index: LocalIndex, doc: dict[str, Any], doc_image_url: str
) -> None:
    client = app_client(ScriptedBackend(turns(doc)), local_index)
    response = await client.post("/v1/responses", json=ask(doc_image_url, instructions="Be brief."))
    assert response.status_code == 200
    body = response.json()
    assert body["object"] == "response" and body["id"].startswith("resp_")
    assert body["status"] == "completed" and body["incomplete_details"] is None
    assert body["instructions"] == "Be brief." and body["store"] is False
    output = body["output"]
    assert [item["type"] for item in output] == [
        "reasoning",
        "web_search_call",
        "reasoning",
        "web_search_call",
        "reasoning",
        "message",
    ]
    assert len({item["id"] for item in output}) == 6
    assert output[0]["content"] == [{"type": "reasoning_text", "text": "I do not recognise this object."}]
    image, text = output[1], output[3]
    assert image["action"]["type"] == "search" and image["action"]["query"] is None
    assert image["kind"] == "image" and image["status"] == "completed"
    assert text["action"]["query"] == doc["title"] and text["kind"] == "text"
    assert doc["url"] in [s["url"] for s in text["action"]["sources"]]
    assert text["results"][0]["url"] == doc["url"] and text["provider"] == "local"
    message = output[-1]
    assert message["role"] == "assistant" and message["status"] == "completed"
    part = message["content"][0]
    assert part["type"] == "output_text" and part["text"] == doc["title"]
    citation = next(a for a in part["annotations"] if a["url"] == doc["url"])
    assert citation == {
        "type": "url_citation",
        "start_index": 0,
        "end_index": len(doc["title"]),
        "title": citation["title"],
        "url": doc["url"],
    }
    usage = body["usage"]
    assert usage["input_tokens"] > 0 and usage["output_tokens"] > 0
    assert usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"]
    assert usage["search_calls"] == {"image": 1, "text": 1}
    assert body["search_results"]


async def test_the_stream_adds_up_to_the_response(
    app_client: AppClient, local_index: LocalIndex, doc: dict[str, Any], doc_image_url: str
) -> None:
    client = app_client(ScriptedBackend(turns(doc) + turns(doc)), local_index)
    full = (await client.post("/v1/responses", json=ask(doc_image_url))).json()
    events = await events_of(client, ask(doc_image_url))
    kinds = [e["type"] for e in events]
    assert kinds[:2] == ["response.created", "response.in_progress"] and kinds[-1] == "response.completed"
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    assert events[0]["response"]["status"] == "in_progress" and events[0]["response"]["output"] == []
    final = events[-1]["response"]
    done = [e["item"] for e in events if e["type"] == "response.output_item.done"]
    assert done == final["output"]
    strip = [{k: v for k, v in item.items() if k not in ("id", "latency_ms")} for item in final["output"]]
    assert strip == [{k: v for k, v in i.items() if k not in ("id", "latency_ms")} for i in full["output"]]
    for index, item in enumerate(final["output"]):
        mine = [e for e in events if e.get("output_index") == index]
        assert mine[0]["type"] == "response.output_item.added"
        assert mine[-1]["type"] == "response.output_item.done"
        assert all(e.get("item_id", item["id"]) == item["id"] for e in mine)
        assert all(e["item"]["id"] == item["id"] for e in mine if "item" in e)
        if item["type"] == "reasoning":
            deltas = "".join(e["delta"] for e in mine if e["type"] == "response.reasoning_text.delta")
            assert deltas == item["content"][0]["text"]
        if item["type"] == "web_search_call":
            assert [e["type"] for e in mine][1:-1] == [
                "response.web_search_call.in_progress",
                "response.web_search_call.searching",
                "response.web_search_call.completed",
            ]
        if item["type"] == "message":
            deltas = "".join(e["delta"] for e in mine if e["type"] == "response.output_text.delta")
            assert deltas == item["content"][0]["text"] == doc["title"]
            added = [e["annotation"] for e in mine if e["type"] == "response.output_text.annotation.added"]
            assert added == item["content"][0]["annotations"] and added


async def test_off_mode_streams_the_reply_live(app_client: AppClient) -> None:
    client = app_client(ScriptedBackend(["The capital of France is Paris."]))
    events = await events_of(client, {"input": "Capital of France?", "search_mode": "off"})
    deltas = [e["delta"] for e in events if e["type"] == "response.output_text.delta"]
    assert len(deltas) > 2 and "".join(deltas) == "The capital of France is Paris."
    assert [i["type"] for i in events[-1]["response"]["output"]] == ["message"]


async def test_a_run_without_an_answer_is_incomplete(app_client: AppClient) -> None:
    client = app_client(ScriptedBackend(["<reason>hmm</reason>"] * 4), max_turns=2)
    body = (await client.post("/v1/responses", json={"input": "Q?"})).json()
    assert body["status"] == "incomplete" and body["incomplete_details"] == {"reason": "max_turns"}
    assert "message" not in [item["type"] for item in body["output"]]
    events = await events_of(client, {"input": "Q?"})
    assert events[-1]["type"] == "response.incomplete"


async def test_an_error_after_the_stream_began_fails_the_response(app_client: AppClient) -> None:
    client = app_client(ScriptedBackend(["<reason>hmm</reason>", BackendError("replica lost")]))
    events = await events_of(client, {"input": "Q?"})
    error, failed = events[-2], events[-1]
    assert error["type"] == "error" and error["code"] == "backend_error"
    assert error["message"] == "replica lost"
    assert failed["type"] == "response.failed" and failed["response"]["status"] == "failed"
    assert failed["response"]["error"] == {"code": "backend_error", "message": "replica lost"}


async def test_a_backend_failure_before_output_is_an_http_error(app_client: AppClient) -> None:
    client = app_client(ScriptedBackend([BackendError("vLLM is down")]))
    response = await client.post("/v1/responses", json={"input": "Q?", "stream": True})
    assert response.status_code == 502 and response.json()["error"]["message"] == "vLLM is down"


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"previous_response_id": "resp_1"}, "previous_response_id"),
        ({"conversation": "conv_1"}, "conversation"),
        ({"background": True}, "background"),
        ({"tools": [{"type": "function", "name": "f", "parameters": {}}]}, "tools[0].type"),
        ({"tool_choice": {"type": "function", "name": "f"}}, "tool_choice"),
        ({"text": {"format": {"type": "json_schema", "name": "x", "schema": {}}}}, "text.format"),
        ({"include": ["message.output_text.logprobs"]}, "include"),
        ({"reasoning": {"effort": "high"}}, "reasoning.effort"),
        ({"max_tool_calls": 2}, "max_tool_calls"),
        ({"input": [{"type": "function_call_output", "call_id": "c", "output": "x"}]}, "input[0].type"),
        ({"input": [{"role": "user", "content": [{"type": "input_file", "file_id": "f"}]}]}, None),
        ({"input": [{"role": "user", "content": [{"type": "input_image", "file_id": "f"}]}]}, None),
        ({"input": [{"role": "assistant", "content": "hello"}]}, "input"),
        ({"model": "gpt-4o"}, "model"),
        ({"frobnicate": 1}, "frobnicate"),
    ],
)
async def test_what_cannot_be_honoured_is_a_400_naming_it(
    app_client: AppClient, body: dict[str, Any], param: str | None
) -> None:
    client = app_client(ScriptedBackend(["<answer>x</answer>"]))
    response = await client.post("/v1/responses", json={"input": "Q?", **body})
    error = response.json()["error"]
    assert response.status_code == (404 if param == "model" else 400), error
    if param is not None:
        assert error["param"] == param
    else:
        assert error["param"].startswith("input[0].content[0]")


async def test_a_huge_input_is_refused_before_its_items_are_validated(app_client: AppClient) -> None:
    client = app_client(ScriptedBackend([]))
    response = await client.post("/v1/responses", json={"input": [{"role": "user", "content": "x"}] * 10_001})
    assert response.status_code == 400 and "10001 items" in response.json()["error"]["message"]


async def test_sent_back_items_and_history_reach_the_model(app_client: AppClient) -> None:
    backend = ScriptedBackend(["<reason>ok</reason><answer>Paris</answer>"])
    client = app_client(backend)
    history = [
        {"role": "user", "content": "Capital of Italy?"},
        {
            "type": "reasoning",
            "id": "rs_1",
            "summary": [],
            "content": [{"type": "reasoning_text", "text": "t"}],
        },
        {"type": "web_search_call", "id": "ws_1", "status": "completed", "action": {"type": "search"}},
        {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Rome"}]},
        {"role": "user", "content": [{"type": "input_text", "text": "And of France?"}]},
    ]
    body = {"instructions": "Answer in one word.", "input": history, "tools": [{"type": "web_search"}]}
    response = await client.post("/v1/responses", json=body)
    assert response.status_code == 200 and response.json()["output"][-1]["content"][0]["text"] == "Paris"
    sent = backend.requests[0].messages
    assert [m.role for m in sent][:3] == ["system", "user", "assistant"]
    assert "Answer in one word." in sent[0].text and "Rome" in sent[2].text
    assert "And of France?" in sent[-1].text


def test_tool_choice_and_the_web_search_tool_map_onto_the_loop() -> None:
    none = to_chat(ResponsesRequest(input="Q?", tool_choice="none"))
    assert none.max_image_searches == 0 and none.max_text_searches == 0
    assert to_chat(ResponsesRequest(input="Q?", tool_choice="required")).search_mode == "always"
    tool = {"type": "web_search_preview", "search_context_size": "low", "user_location": {"country": "FR"}}
    chat = to_chat(ResponsesRequest(input="Q?", tools=[tool], max_output_tokens=64))
    assert chat.web_search_options is not None and chat.web_search_options.search_context_size == "low"
    assert chat.max_completion_tokens == 64 and chat.search_mode == "auto"
    with pytest.raises(InvalidInputError, match=r"tools\[0\]\.user_location\.planet"):
        tool = {"type": "web_search", "user_location": {"planet": "x"}}
        to_chat(ResponsesRequest(input="Q?", tools=[tool]))


async def test_stored_responses_and_unknown_paths_are_404s_that_say_why(app_client: AppClient) -> None:
    client = app_client(ScriptedBackend([]))
    stored = await client.get("/v1/responses/resp_1")
    assert stored.status_code == 404 and "keeps no responses" in stored.json()["error"]["message"]
    unknown = await client.post("/v1/completions", json={})
    error = unknown.json()["error"]
    assert unknown.status_code == 404 and error["code"] == "not_found"
    assert "/v1/chat/completions" in error["message"] and "/v1/responses" in error["message"]


# --- the real clients, against a live gateway ---


@pytest.mark.slow
def test_openai_responses_create_and_stream_helper(
    gateway: LiveServer, scripted: str, doc_image_url: str
) -> None:
    client = openai.OpenAI(base_url=gateway.url + "/v1", api_key=KEY, timeout=20, max_retries=0)
    content = [
        {"type": "input_text", "text": "Who designed this?"},
        {"type": "input_image", "image_url": doc_image_url},
    ]
    done = client.responses.create(model=MODEL, input=[{"role": "user", "content": content}])  # type: ignore[arg-type, misc]
    assert done.output_text == scripted and done.status == "completed"
    searches = [item for item in done.output if item.type == "web_search_call"]
    assert len(searches) == 2 and searches[1].action.type == "search"
    assert searches[1].action.sources  # type: ignore[union-attr]
    message = done.output[-1]
    assert message.type == "message" and message.content[0].type == "output_text"
    assert message.content[0].annotations[0].type == "url_citation"


@pytest.mark.slow
def test_openai_stream_helper_accumulates_the_run(
    gateway: LiveServer, model_server: ModelServer, scripted: str, doc_image_url: str
) -> None:
    client = openai.OpenAI(base_url=gateway.url + "/v1", api_key=KEY, timeout=20, max_retries=0)
    content = [
        {"type": "input_text", "text": "Who designed this?"},
        {"type": "input_image", "image_url": doc_image_url},
    ]
    with client.responses.stream(model=MODEL, input=[{"role": "user", "content": content}]) as stream:  # type: ignore[arg-type, misc]
        kinds = [event.type for event in stream]
        final = stream.get_final_response()
    assert kinds.count("response.web_search_call.completed") == 2
    assert final.output_text == scripted
    assert [item.type for item in final.output][-1] == "message"


@pytest.mark.slow
def test_langchain_use_responses_api(gateway: LiveServer, scripted: str, doc_image_url: str) -> None:
    from langchain_openai import ChatOpenAI

    chat = ChatOpenAI(
        model=MODEL, base_url=gateway.url + "/v1", api_key=KEY, use_responses_api=True, max_retries=0
    )  # type: ignore[call-arg]
    content = [
        {"type": "text", "text": "Who designed this?"},
        {"type": "image_url", "image_url": {"url": doc_image_url}},
    ]
    reply = chat.invoke([{"role": "user", "content": content}])
    assert reply.text == scripted
