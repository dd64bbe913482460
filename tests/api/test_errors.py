"""Every error path answers with the right status and OpenAI's envelope, never a 500 for bad input."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from PIL import Image

from mmsr_serve.backends import ScriptedBackend
from mmsr_serve.errors import BackendError, BackendTimeout
from tests.api.conftest import AppClient, BlockingBackend, data_url, user_with_image, wait_for

Q = [{"role": "user", "content": "Q?"}]


def assert_envelope(
    response: httpx.Response, status: int, *, param: str | None = None, code: Any = ...
) -> str:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert isinstance(error["message"], str) and error["message"]
    assert error["param"] == param
    if code is not ...:
        assert error["code"] == code
    return str(error["message"])


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"messages": Q, "tools": [{"type": "function", "function": {"name": "f"}}]}, "tools"),
        ({"messages": Q, "tool_choice": "required"}, "tool_choice"),
        ({"messages": Q, "response_format": {"type": "json_schema", "json_schema": {}}}, "response_format"),
        ({"messages": Q, "logprobs": True}, "logprobs"),
        ({"messages": Q, "audio": {"voice": "alloy", "format": "mp3"}}, "audio"),
        ({"messages": Q, "frequency_penalty": 0.5}, "frequency_penalty"),
        ({"messages": Q, "n": 5}, "n"),
        ({"messages": Q, "stream_options": {"include_usage": True}}, "stream_options"),
        ({"messages": Q, "max_tokens": 100_000}, "max_tokens"),
        ({"messages": Q, "max_turns": 9}, "max_turns"),
        ({"messages": Q, "search_top_k": 50}, "search_top_k"),
        ({"messages": Q, "search_mode": "sometimes"}, "search_mode"),
        ({"messages": Q, "temperature": 3}, "temperature"),
        ({"messages": Q, "min_p": 1.5}, "min_p"),
        ({"messages": Q, "repetition_penalty": 0}, "repetition_penalty"),
        ({"messages": Q, "serch_mode": "off"}, "serch_mode"),
        ({"messages": []}, "messages"),
        ({"messages": [*Q, {"role": "assistant", "content": "A"}]}, "messages"),
        ({"messages": [{"role": "tool", "content": "x", "tool_call_id": "1"}, *Q]}, "messages[0].role"),
        (
            {"messages": [{"role": "user", "content": [{"type": "input_audio", "input_audio": {}}]}]},
            "messages[0].content[0].type",
        ),
        ({"messages": [{"role": "user", "content": [{"type": "text", "text": " "}]}]}, "messages[0].content"),
    ],
)
async def test_bad_requests_are_400_naming_the_field(
    app_client: AppClient, body: dict[str, Any], param: str
) -> None:
    client = app_client(ScriptedBackend())
    response = await client.post("/v1/chat/completions", json=body)
    message = assert_envelope(response, 400, param=param)
    assert param.split(".")[0].split("[")[0] in message


async def test_invalid_json_is_400(app_client: AppClient) -> None:
    client = app_client(ScriptedBackend())
    response = await client.post(
        "/v1/chat/completions", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert_envelope(response, 400)


async def test_images_undecodable_oversized_too_many_or_remote(app_client: AppClient) -> None:
    client = app_client(ScriptedBackend(), max_image_bytes=2000, max_images=1, allow_image_urls=False)
    bad = "data:image/png;base64," + base64.b64encode(b"not an image").decode()
    big = data_url(Image.effect_noise((200, 200), 60).convert("RGB"), "PNG")
    small = data_url(Image.new("RGB", (8, 8), "red"), "PNG")
    param = "messages[0].content[1].image_url"
    for url in (bad, big, "https://example.org/cat.jpg", "file:///etc/passwd"):
        response = await client.post("/v1/chat/completions", json={"messages": [user_with_image("Q?", url)]})
        assert_envelope(response, 400, param=param, code="invalid_image")
    two = user_with_image("Q?", small)
    two["content"].append({"type": "image_url", "image_url": {"url": small}})
    response = await client.post("/v1/chat/completions", json={"messages": [two]})
    assert "too many images" in assert_envelope(response, 400, param="messages")


async def test_unknown_model_is_404(app_client: AppClient) -> None:
    client = app_client(ScriptedBackend())
    response = await client.post("/v1/chat/completions", json={"model": "gpt-4o", "messages": Q})
    assert_envelope(response, 404, param="model", code="model_not_found")
    assert_envelope(await client.get("/v1/models/gpt-4o"), 404, param="model")
    assert_envelope(await client.get("/no/such/path"), 404)


async def test_api_keys(app_client: AppClient) -> None:
    client = app_client(ScriptedBackend(["<reason>r</reason><answer>ok</answer>"]), api_keys=["k1", "k2"])
    for headers in ({}, {"Authorization": "Bearer nope"}, {"Authorization": "Basic k1"}):
        response = await client.post("/v1/chat/completions", json={"messages": Q}, headers=headers)
        assert_envelope(response, 401, code="invalid_api_key")
        assert response.headers["www-authenticate"] == "Bearer"
    for path in ("/v1/models", "/no/such/path", "/docs"):
        assert (await client.get(path)).status_code == 401
    for path in ("/health", "/ready", "/metrics"):  # probes and scrapers have no key
        assert (await client.get(path)).status_code == 200
    ok = await client.post(
        "/v1/chat/completions", json={"messages": Q}, headers={"Authorization": "Bearer k2"}
    )
    assert ok.status_code == 200


async def test_body_too_large_is_413(app_client: AppClient) -> None:
    client = app_client(ScriptedBackend(), max_body_bytes=2048)
    body = {"messages": [{"role": "user", "content": "x" * 4096}]}
    assert_envelope(await client.post("/v1/chat/completions", json=body), 413, code="request_too_large")

    async def chunked() -> AsyncIterator[bytes]:  # no Content-Length: counted as it arrives
        yield b'{"messages": [{"role": "user", "content": "'
        for _ in range(10):
            yield b"x" * 512
        yield b'"}]}'

    response = await client.post("/v1/chat/completions", content=chunked())
    assert_envelope(response, 413, code="request_too_large")


async def test_concurrency_limit_is_429_with_retry_after(app_client: AppClient) -> None:
    backend = BlockingBackend()
    client = app_client(backend, max_concurrent_requests=1)
    first = asyncio.create_task(client.post("/v1/chat/completions", json={"messages": Q}))
    assert await wait_for(backend.started)
    response = await client.post("/v1/chat/completions", json={"messages": Q})
    assert_envelope(response, 429, code="rate_limit_exceeded")
    assert response.headers["retry-after"] == "1"
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first


@pytest.mark.parametrize(
    ("error", "status", "code"),
    [
        (BackendError("connection refused by every replica"), 502, "backend_error"),
        (BackendTimeout("no answer within 300 s"), 504, "backend_timeout"),
    ],
)
async def test_backend_failures(app_client: AppClient, error: Exception, status: int, code: str) -> None:
    client = app_client(ScriptedBackend([error]))
    response = await client.post("/v1/chat/completions", json={"messages": Q})
    assert str(error) in assert_envelope(response, status, code=code)


async def test_request_timeout_is_504(app_client: AppClient) -> None:
    backend = BlockingBackend()
    client = app_client(backend, request_timeout_s=0.2)
    response = await client.post("/v1/chat/completions", json={"messages": Q})
    assert_envelope(response, 504, code="request_timeout")
    assert backend.cancelled.is_set()


async def test_not_ready_is_503(app_client: AppClient) -> None:
    class Down(ScriptedBackend):
        async def check_ready(self) -> None:
            raise BackendError("no replica is ready")

    client = app_client(Down())
    assert "no replica is ready" in assert_envelope(await client.get("/ready"), 503, code="not_ready")
    assert (await app_client(ScriptedBackend()).get("/ready")).json()["status"] == "ready"


async def test_a_bug_is_500_without_details(app_client: AppClient) -> None:
    app = app_client(ScriptedBackend([RuntimeError("secret internals")])).app  # type: ignore[attr-defined]
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)  # as uvicorn: logged, not raised
    async with httpx.AsyncClient(transport=transport, base_url="http://mmsr.test") as client:
        response = await client.post("/v1/chat/completions", json={"messages": Q})
    assert assert_envelope(response, 500) == "internal server error"


@pytest.mark.parametrize(
    ("body", "where"),
    [
        ({"messages": [{"role": "user", "content": "Q\udc80?"}]}, "messages[0].content"),
        (
            {
                "messages": [
                    {"role": "system", "content": "ok"},
                    {"role": "user", "content": [{"type": "text", "text": "\ud800"}]},
                ]
            },
            "messages[1].content[0].text",
        ),
        ({"messages": Q, "model": "m\udcff"}, "model"),
        ({"messages": Q, "stop": ["\udfff"]}, "stop[0]"),
        (
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [
                            {"type": "image_url", "image_url": {"url": "data:\udc00"}},
                            {"type": "text", "text": "Q?"},
                        ],
                    }
                ]
            },
            "messages[0].content[0].image_url.url",
        ),
    ],
)
async def test_lone_surrogates_are_400_naming_the_field(
    app_client: AppClient, body: dict[str, Any], where: str
) -> None:
    import json

    client = app_client(ScriptedBackend(["<answer>x</answer>"]))
    raw = json.dumps(body)  # ensure_ascii: the surrogates travel as \\udcxx escapes, as JSON allows
    response = await client.post(
        "/v1/chat/completions", content=raw, headers={"content-type": "application/json"}
    )
    assert where in assert_envelope(response, 400)


async def test_no_redirect_is_built_from_the_host_header(app_client: AppClient) -> None:
    client = app_client(ScriptedBackend())
    response = await client.get("/health/", headers={"host": "evil.example"})
    assert response.status_code == 404 and "evil.example" not in response.headers.get("location", "")
    assert (await client.head("/health")).status_code == 200  # load balancers probe with HEAD
    assert (await client.head("/ready")).status_code == 200


async def test_an_open_ready_names_no_address(app_client: AppClient) -> None:
    import socket

    from mmsr_serve.backends import OpenAIBackend

    with socket.socket() as sock:  # a loopback port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    down = OpenAIBackend(f"http://127.0.0.1:{port}/v1", "m", max_retries=0, connect_timeout_s=0.5)
    client = app_client(down, api_keys=["k1"])
    message = assert_envelope(await client.get("/ready"), 503, code="not_ready")
    assert str(port) not in message and "not ready" in message


async def test_too_many_messages_or_parts_are_400_naming_the_limit(app_client: AppClient) -> None:
    client = app_client(ScriptedBackend(["<answer>x</answer>"] * 3), max_messages=8, max_content_parts=6)
    history = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}] * 4
    many = await client.post("/v1/chat/completions", json={"messages": [*history, *Q]})
    assert "more than the 8 allowed" in assert_envelope(many, 400, param="messages")
    parts = [{"type": "text", "text": "a"}] * 7
    wide = await client.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": parts}]})
    assert "more than the 6 allowed" in assert_envelope(wide, 400, param="messages")
    # far beyond any setting: refused before a single message is validated (the event loop stays free)
    flood = [{"role": "user", "content": "x"}] * 200_000
    refused = await client.post("/v1/chat/completions", json={"messages": flood})
    assert "more than the 10000 accepted" in assert_envelope(refused, 400)
    assert (await client.post("/v1/chat/completions", json={"messages": Q})).status_code == 200


async def test_image_urls_are_fetched_together_within_the_request_deadline(
    app_client: AppClient, live_app: Any
) -> None:
    import io as _io
    import threading

    from starlette.applications import Starlette
    from starlette.responses import Response
    from starlette.routing import Route

    buf = _io.BytesIO()
    Image.new("RGB", (8, 8), "red").save(buf, "PNG")
    both_in_flight, in_flight, lock = threading.Event(), [0], threading.Lock()

    async def image(request: Any) -> Response:
        with lock:
            in_flight[0] += 1
            if in_flight[0] == 2:
                both_in_flight.set()
        try:
            if request.path_params["name"] == "hang":
                await asyncio.sleep(1)  # past the 0.5 s deadline
            else:  # each waits until the other image is being fetched too (at most 3 s)
                await asyncio.to_thread(both_in_flight.wait, 3)
            return Response(buf.getvalue(), media_type="image/png")
        finally:
            with lock:
                in_flight[0] -= 1

    host = live_app(Starlette(routes=[Route("/{name}.png", image)]))
    parts = [{"type": "image_url", "image_url": {"url": f"{host.url}/{n}.png"}} for n in ("a", "b")]
    message = {"role": "user", "content": [*parts, {"type": "text", "text": "Same?"}]}
    client = app_client(ScriptedBackend(["<answer>yes</answer>"]), fetch_allow=["127.0.0.1"])
    response = await client.post("/v1/chat/completions", json={"messages": [message], "search_mode": "off"})
    assert response.status_code == 200 and both_in_flight.is_set()  # fetched at once, not one by one
    slow = app_client(ScriptedBackend(), fetch_allow=["127.0.0.1"], request_timeout_s=0.5)
    hung = {
        "role": "user",
        "content": [
            {"type": "image_url", "image_url": {"url": f"{host.url}/hang.png"}},
            {"type": "text", "text": "Q?"},
        ],
    }
    assert_envelope(
        await slow.post("/v1/chat/completions", json={"messages": [hung]}), 504, code="request_timeout"
    )


async def test_vllms_sampling_extras_reach_the_backend(app_client: AppClient) -> None:
    backend = ScriptedBackend(["<reason>r</reason><answer>ok</answer>", "plain"])
    client = app_client(backend)
    extras = {"top_k": 20, "min_p": 0.05, "repetition_penalty": 1.1, "temperature": 0.6}
    for mode in ("auto", "off"):
        body = {"messages": Q, "search_mode": mode, **extras}
        assert (await client.post("/v1/chat/completions", json=body)).status_code == 200
    for request in backend.requests:
        assert (request.top_k, request.min_p, request.repetition_penalty) == (20, 0.05, 1.1)


async def test_the_openapi_schema_advertises_the_400_the_server_answers(app_client: AppClient) -> None:
    schema = (await app_client(ScriptedBackend()).get("/openapi.json")).json()
    responses = schema["paths"]["/v1/chat/completions"]["post"]["responses"]
    assert "422" not in responses and "400" in responses
    ref = responses["400"]["content"]["application/json"]["schema"]["$ref"]
    assert ref == "#/components/schemas/ErrorResponse"
    assert "ErrorBody" in schema["components"]["schemas"]
    assert "HTTPValidationError" not in schema["components"]["schemas"]
    assert "422" not in str(schema)


@pytest.mark.parametrize(
    ("content", "param"),
    [
        (5, "messages[0].content"),
        ([{"type": "text", "text": 5}], "messages[0].content[0].text"),
        ([{"type": "image_url", "image_url": {"url": 3}}], "messages[0].content[0].image_url.url"),
    ],
)
async def test_validation_errors_name_the_field_not_pydantics_union_member(
    app_client: AppClient, content: Any, param: str
) -> None:
    client = app_client(ScriptedBackend())
    response = await client.post(
        "/v1/chat/completions", json={"messages": [{"role": "user", "content": content}]}
    )
    assert assert_envelope(response, 400, param=param).startswith(param + ":")
