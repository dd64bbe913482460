"""What a client sees when the model server fails: OpenAI's statuses, the model server's own
message, never its address or the gateway's key for it (issue 13, items 2, 6 and 7)."""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import urlsplit

import httpx
import openai
import pytest

from mmsr_serve.api.app import create_app
from mmsr_serve.api.settings import Settings
from mmsr_serve.backends import OpenAIBackend
from tests.api.live import LiveServer, serve_in_thread
from tests.api.model_server import MODEL, Failure, Malformed, ModelServer

BACKEND_KEY = "sk-backend-SECRET-7f3a9c"
QUESTION = [{"role": "user", "content": "Capital of France?"}]


@pytest.fixture(scope="module")
def _servers() -> Iterator[tuple[LiveServer, ModelServer]]:
    """One model stand-in and one gateway for the module (each live server costs ~0.3 s to stop)."""
    model_server = ModelServer()
    with serve_in_thread(model_server.app) as live:
        model_server.url = live.url + "/v1"
        settings = Settings(model=MODEL, backend_urls=[model_server.url], backend_api_key=BACKEND_KEY)
        backend = OpenAIBackend(  # as the settings would build it, with quick retries
            model_server.url, MODEL, api_key=BACKEND_KEY, timeout_s=10, backoff_s=0.01, max_backoff_s=0.02
        )
        with serve_in_thread(create_app(settings, backend=backend)) as gateway:
            yield gateway, model_server


@pytest.fixture
def gateway(_servers: tuple[LiveServer, ModelServer]) -> LiveServer:
    return _servers[0]


@pytest.fixture
def model_server(_servers: tuple[LiveServer, ModelServer]) -> ModelServer:
    server = _servers[1]
    server.replies.clear()
    server.requests.clear()
    return server


def _post(gateway: LiveServer, stream: bool = False) -> httpx.Response:
    body = {"model": MODEL, "messages": QUESTION, "search_mode": "off", "stream": stream}
    return httpx.post(gateway.url + "/v1/chat/completions", json=body, timeout=20)


def _hidden(model_server: ModelServer, text: str) -> bool:
    where = urlsplit(model_server.url)
    return f"{where.hostname}:{where.port}" not in text and BACKEND_KEY not in text


def test_a_prompt_over_the_context_is_400_context_length_exceeded(
    gateway: LiveServer, model_server: ModelServer
) -> None:
    vllm = (
        "This model's maximum context length is 8192 tokens. However, you requested 9000 tokens "
        "(8000 in the messages, 1000 in the completion). Please reduce the length of the messages."
    )
    model_server.enqueue(Failure(400, vllm))
    client = openai.OpenAI(base_url=gateway.url + "/v1", api_key="none", max_retries=0)
    with pytest.raises(openai.BadRequestError) as caught:  # not retried by the SDK: a 400
        client.chat.completions.create(model=MODEL, messages=QUESTION, extra_body={"search_mode": "off"})
    error = caught.value.body
    assert isinstance(error, dict) and error["code"] == "context_length_exceeded"
    assert "maximum context length is 8192" in error["message"] and _hidden(model_server, str(error))
    assert len(model_server.requests) == 1


@pytest.mark.parametrize(
    ("status", "expected"),
    [(422, 400), (413, 400), (404, 502), (401, 502), (429, 429), (503, 502)],
)
def test_other_backend_statuses_by_meaning_without_the_backends_address(
    gateway: LiveServer, model_server: ModelServer, status: int, expected: int
) -> None:
    model_server.enqueue(*[Failure(status, f"refused with {status}")] * 4)  # the retries of 429 and 5xx
    response = _post(gateway)
    assert response.status_code == expected, response.text
    error = response.json()["error"]
    assert f"refused with {status}" in error["message"] and _hidden(model_server, response.text)
    if expected == 429:
        assert response.headers["retry-after"].isdigit()


def test_the_backend_key_echoed_by_the_model_server_is_masked(
    gateway: LiveServer, model_server: ModelServer, caplog: pytest.LogCaptureFixture
) -> None:
    model_server.enqueue(Failure(400, "bad request (sent with {authorization})"))
    response = _post(gateway)
    assert response.status_code == 400 and "Bearer ***" in response.json()["error"]["message"]
    assert _hidden(model_server, response.text)
    assert BACKEND_KEY not in caplog.text


def test_a_malformed_stream_is_retried_then_502_not_500(
    gateway: LiveServer, model_server: ModelServer
) -> None:
    model_server.enqueue(Malformed("{not json"), "Paris.")
    ok = _post(gateway)
    assert ok.status_code == 200 and ok.json()["choices"][0]["message"]["content"] == "Paris."
    model_server.enqueue(*[Malformed("[1, 2")] * 4)
    failed = _post(gateway)
    assert failed.status_code == 502 and failed.json()["error"]["type"] == "backend_error"
    assert "malformed" in failed.json()["error"]["message"] and _hidden(model_server, failed.text)
