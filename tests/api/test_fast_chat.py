"""The fast path of ``POST /v1/chat/completions``: it takes valid JSON requests itself, and hands
everything else to the FastAPI route, whose answers (their 400 messages) stay what they were."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import orjson
import pytest

import mmsr_serve.api.fast_chat as fast_chat
import mmsr_serve.api.routes as routes
from mmsr_serve.backends import ScriptedBackend
from tests.api.conftest import AppClient

ANSWER = "Paris"  # search_mode off: the model's text as it is
Q = [{"role": "user", "content": "Where?"}]


@pytest.fixture
def paths(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Which way each request went: 'fast' (this module) or 'route' (FastAPI's endpoint)."""
    taken: list[str] = []

    def counting(name: str, run: Any) -> Any:
        async def wrapped(*args: Any, **kwargs: Any) -> Any:
            taken.append(name)
            return await run(*args, **kwargs)

        return wrapped

    monkeypatch.setattr(fast_chat, "run_request", counting("fast", fast_chat.run_request))
    monkeypatch.setattr(routes, "run_request", counting("route", routes.run_request))
    yield taken


async def test_a_valid_request_takes_the_fast_path(app_client: AppClient, paths: list[str]) -> None:
    client = app_client(ScriptedBackend([ANSWER, ANSWER]))
    response = await client.post("/v1/chat/completions", json={"messages": Q, "search_mode": "off"})
    assert response.status_code == 200, response.text
    assert response.json()["choices"][0]["message"]["content"] == "Paris"
    assert response.json()["object"] == "chat.completion"
    assert response.headers["x-request-id"]  # the server's middleware saw it
    charset = {"content-type": "application/json; charset=utf-8"}
    body = orjson.dumps({"messages": Q, "search_mode": "off", "stream": True})
    async with client.stream("POST", "/v1/chat/completions", content=body, headers=charset) as streamed:
        assert streamed.status_code == 200
        lines = [line async for line in streamed.aiter_lines() if line.startswith("data: ")]
    assert lines[-1] == "data: [DONE]" and "Paris" in "".join(lines)
    assert paths == ["fast", "fast"]


async def test_what_does_not_validate_is_answered_by_the_route(
    app_client: AppClient, paths: list[str]
) -> None:
    client = app_client(ScriptedBackend())
    extra = await client.post("/v1/chat/completions", json={"messages": Q, "colour": "blue"})
    assert extra.status_code == 400
    assert extra.json()["error"]["message"] == "unrecognized request argument: colour"
    bad_json = await client.post(
        "/v1/chat/completions", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert bad_json.json()["error"]["message"] == "the request body is not valid JSON"
    # pydantic's JSON parser refuses a lone surrogate escape; the route's check names the field
    surrogate = b'{"messages": [{"role": "user", "content": "Q\\udc80?"}]}'
    json_type = {"content-type": "application/json"}
    lone = await client.post("/v1/chat/completions", content=surrogate, headers=json_type)
    assert lone.status_code == 400 and "messages[0].content" in lone.json()["error"]["message"]
    assert paths == []  # none reached an endpoint: all three are the route's validation errors


async def test_other_content_types_and_methods_go_to_the_route(
    app_client: AppClient, paths: list[str]
) -> None:
    client = app_client(ScriptedBackend([ANSWER]))
    json_suffix = {"content-type": "application/vnd.api+json"}  # JSON to FastAPI, not to the fast path
    body = orjson.dumps({"messages": Q, "search_mode": "off"})
    response = await client.post("/v1/chat/completions", content=body, headers=json_suffix)
    assert response.status_code == 200 and response.json()["choices"][0]["message"]["content"] == "Paris"
    assert (await client.get("/v1/chat/completions")).status_code == 405
    assert paths == ["route"]


async def test_the_pipelines_errors_are_answered_and_counted_as_on_the_route(
    app_client: AppClient, paths: list[str]
) -> None:
    client = app_client(ScriptedBackend())
    response = await client.post("/v1/chat/completions", json={"messages": Q, "model": "gpt-9"})
    assert response.status_code == 404
    assert response.json()["error"] == {
        "message": "the model 'gpt-9' does not exist",
        "type": "invalid_request_error",
        "param": "model",
        "code": "model_not_found",
    }
    metrics = (await client.get("/metrics")).text
    assert 'mmsr_errors_total{type="NotFound"} 1.0' in metrics
    assert 'path="/v1/chat/completions",status="404"' in metrics
    assert paths == ["fast"]
