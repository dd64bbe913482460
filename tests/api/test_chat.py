"""Non-streaming chat completions through the real app (ASGI transport), with the scripted backend."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PIL import Image

from mmsr_serve.agent.parser import STOP_STRINGS
from mmsr_serve.backends import ScriptedBackend
from mmsr_serve.search.local import LocalIndex
from tests.api.conftest import IMAGE_SEARCH, AppClient, R, data_url, user_with_image


def text_search(doc: dict[str, Any]) -> str:
    return f"{R}<text_search>{doc['title']} designer</text_search>"


def designer(doc: dict[str, Any]) -> str:
    return doc["text"].split("designed by ")[1].split(" and ")[0]


async def test_image_search_then_text_search_then_answer(
    app_client: AppClient, local_index: LocalIndex, doc: dict[str, Any], doc_image_url: str
) -> None:
    answer = designer(doc)
    backend = ScriptedBackend([IMAGE_SEARCH, text_search(doc), f"{R}<answer>{answer}</answer>"])
    client = app_client(backend, local_index)
    body = {
        "model": "mmsr-test",
        "messages": [user_with_image("Who designed this?", doc_image_url)],
        "return_trace": True,
    }
    response = await client.post("/v1/chat/completions", json=body)
    assert response.status_code == 200, response.text
    data = response.json()
    choice = data["choices"][0]
    assert choice["message"]["content"] == answer
    assert choice["finish_reason"] == "stop"
    assert choice["message"]["reasoning_content"] == "\n\n".join(["thinking it over"] * 3)
    assert choice["message"]["reasoning"] == choice["message"]["reasoning_content"]
    assert data["usage"]["search_calls"] == {"image": 1, "text": 1}
    assert data["usage"]["num_search_queries"] == 2
    assert (
        data["usage"]["total_tokens"] == data["usage"]["prompt_tokens"] + data["usage"]["completion_tokens"]
    )
    urls = [a["url_citation"]["url"] for a in choice["message"]["annotations"]]
    assert doc["url"] in urls and len(urls) == len(set(urls))
    assert all(a["type"] == "url_citation" for a in choice["message"]["annotations"])
    kinds = {(r["kind"], r["url"]) for r in data["search_results"]}
    assert ("image", doc["url"]) in kinds and ("text", doc["url"]) in kinds
    text_hit = next(r for r in data["search_results"] if r["kind"] == "text" and r["url"] == doc["url"])
    assert answer in text_hit["snippet"]
    steps = data["trace"]["steps"]
    assert [s["type"] for s in steps] == ["turn", "search", "turn", "search", "turn", "finish"]
    assert [s["action"] for s in steps if s["type"] == "turn"] == ["image_search", "text_search", "answer"]
    search = steps[1]
    assert search["kind"] == "image" and search["provider"] == "local" and search["cached"] is False
    assert search["latency_ms"] >= 0 and search["results"]
    assert data["trace"]["search_mode"] == "auto"
    # the model saw the protocol prompt with the image, and stop strings
    assert backend.requests[0].stop == STOP_STRINGS
    assert backend.requests[0].messages[-1].images


async def test_no_trace_unless_asked(app_client: AppClient) -> None:
    client = app_client(ScriptedBackend([f"{R}<answer>Paris</answer>"]))
    data = (
        await client.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": "Q?"}]})
    ).json()
    assert "trace" not in data
    assert data["choices"][0]["message"]["content"] == "Paris"
    assert data["object"] == "chat.completion" and data["model"] == "mmsr-test"


async def test_search_mode_off_sends_no_protocol(app_client: AppClient) -> None:
    backend = ScriptedBackend(["Paris is the capital. <answer>not a tag here</answer>"])
    client = app_client(backend)
    body = {"messages": [{"role": "user", "content": "Capital of France?"}], "search_mode": "off"}
    data = (await client.post("/v1/chat/completions", json=body)).json()
    assert data["choices"][0]["message"]["content"] == "Paris is the capital. <answer>not a tag here</answer>"
    assert "reasoning_content" not in data["choices"][0]["message"]
    request = backend.requests[0]
    assert request.stop == ()
    assert [m.text for m in request.messages] == ["Capital of France?"]
    assert data["usage"]["num_search_queries"] == 0


async def test_search_mode_always_searches_twice(
    app_client: AppClient, local_index: LocalIndex, doc: dict[str, Any], doc_image_url: str
) -> None:
    answer = designer(doc)
    # The model would answer at once; "always" runs the image search first, then requires a text search.
    backend = ScriptedBackend([text_search(doc), f"{R}<answer>{answer}</answer>"])
    client = app_client(backend, local_index)
    body = {"messages": [user_with_image("Who designed this?", doc_image_url)], "search_mode": "always"}
    body["return_trace"] = True
    data = (await client.post("/v1/chat/completions", json=body)).json()
    assert data["usage"]["search_calls"] == {"image": 1, "text": 1}
    assert data["choices"][0]["message"]["content"] == answer
    # the trace shows the image search run before the first turn, in order
    steps = [(s["type"], s.get("kind"), s.get("turn")) for s in data["trace"]["steps"]]
    assert steps == [
        ("search", "image", 0),
        ("turn", None, 1),
        ("search", "text", 1),
        ("turn", None, 2),
        ("finish", None, None),
    ]


async def test_history_and_system_messages_reach_the_model(app_client: AppClient) -> None:
    backend = ScriptedBackend([f"{R}<answer>1851</answer>"])
    client = app_client(backend)
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Tell me about the tower."},
        {"role": "assistant", "content": [{"type": "text", "text": "It is tall."}]},
        {"role": "user", "content": "When was it built?"},
    ]
    response = await client.post("/v1/chat/completions", json={"messages": messages})
    assert response.status_code == 200
    sent = backend.requests[0].messages
    assert [m.role for m in sent[:3]] == ["system", "user", "assistant"]
    assert "When was it built?" in sent[-1].text


async def test_stop_sequence_cuts_the_answer(app_client: AppClient) -> None:
    client = app_client(ScriptedBackend([f"{R}<answer>Paris, France</answer>"]))
    body = {"messages": [{"role": "user", "content": "Q?"}], "stop": [","]}
    data = (await client.post("/v1/chat/completions", json=body)).json()
    assert data["choices"][0]["message"]["content"] == "Paris"
    assert data["choices"][0]["finish_reason"] == "stop"


async def test_max_turns_without_answer_is_reported(app_client: AppClient) -> None:
    client = app_client(ScriptedBackend(["no tags at all"]))
    body = {"messages": [{"role": "user", "content": "Q?"}], "max_turns": 1}
    data = (await client.post("/v1/chat/completions", json=body)).json()
    assert data["choices"][0]["finish_reason"] == "max_turns"
    assert data["choices"][0]["message"]["content"] == ""


async def test_max_tokens_is_per_turn(app_client: AppClient) -> None:
    backend = ScriptedBackend([f"{R}<answer>Paris</answer>"])
    client = app_client(backend)
    body = {"messages": [{"role": "user", "content": "Q?"}], "max_completion_tokens": 7}
    await client.post("/v1/chat/completions", json=body)
    assert backend.requests[0].max_tokens == 7


async def test_n_runs_independent_choices(app_client: AppClient) -> None:
    backend = ScriptedBackend([f"{R}<answer>A</answer>", f"{R}<answer>B</answer>"])
    client = app_client(backend)
    body = {"messages": [{"role": "user", "content": "Q?"}], "n": 2, "seed": 10}
    data = (await client.post("/v1/chat/completions", json=body)).json()
    assert [c["index"] for c in data["choices"]] == [0, 1]
    assert sorted(c["message"]["content"] for c in data["choices"]) == ["A", "B"]
    assert sorted(r.seed for r in backend.requests) == [10, 11]


async def test_models_endpoint(app_client: AppClient) -> None:
    client = app_client(ScriptedBackend())
    data = (await client.get("/v1/models")).json()
    assert data["object"] == "list" and [m["id"] for m in data["data"]] == ["mmsr-test"]
    assert (await client.get("/v1/models/mmsr-test")).json()["id"] == "mmsr-test"
    assert (await client.get("/health")).json() == {"status": "ok"}


async def test_http_image_urls_go_through_the_safe_fetcher(
    app_client: AppClient, live_app: Any, corpus_dir: Any, doc: dict[str, Any]
) -> None:
    from starlette.applications import Starlette
    from starlette.responses import FileResponse
    from starlette.routing import Route

    async def image(request: Any) -> FileResponse:
        return FileResponse(corpus_dir / doc["image"], media_type="image/png")

    host = live_app(Starlette(routes=[Route("/cat.png", image)]))
    message = user_with_image("What is this?", host.url + "/cat.png")
    refused = await app_client(ScriptedBackend()).post("/v1/chat/completions", json={"messages": [message]})
    assert refused.status_code == 400 and refused.json()["error"]["code"] == "invalid_image"
    backend = ScriptedBackend([f"{R}<answer>a tortoise</answer>"])
    client = app_client(backend, fetch_allow=["127.0.0.1"])
    response = await client.post("/v1/chat/completions", json={"messages": [message]})
    assert response.status_code == 200, response.text
    assert backend.requests[0].messages[-1].images


async def test_search_cache_setting_wraps_the_index(
    app_client: AppClient, local_index: LocalIndex, doc: dict[str, Any], doc_image_url: str, tmp_path: Any
) -> None:
    turns = [IMAGE_SEARCH, f"{R}<answer>x</answer>"]
    client = app_client(ScriptedBackend(turns * 2), local_index, search_cache=tmp_path / "cache.sqlite")
    body = {"messages": [user_with_image("What is this?", doc_image_url)], "return_trace": True}
    cached = []
    for _ in range(2):
        data = (await client.post("/v1/chat/completions", json=body)).json()
        cached += [s["cached"] for s in data["trace"]["steps"] if s["type"] == "search"]
    assert cached == [False, True]
    assert "mmsr_search_cache_hits_total" in (await client.get("/metrics")).text
    assert (await client.get("/ready")).status_code == 200


async def test_the_checkpoints_image_sizes_apply_to_the_users_image(
    app_client: AppClient, tmp_path: Path
) -> None:
    pack = tmp_path / "pack.json"
    pack.write_text('{"image_min_pixels": 262144, "image_max_pixels": 903168, "image_resample": "nearest"}')
    backend = ScriptedBackend(["<reason>r</reason><answer>A</answer>"])
    client = app_client(backend, prompt_pack=pack)
    small = data_url(Image.new("RGB", (300, 300), "green"), "PNG")
    response = await client.post("/v1/chat/completions", json={"messages": [user_with_image("Q?", small)]})
    assert response.status_code == 200
    sent = next(m.images for m in backend.requests[0].messages if m.images)[0]
    assert sent.size == (512, 512)  # upscaled to the pack's minimum, as the checkpoint was trained
