"""The gateway against faulty stand-ins: every fault mode of the model server and the search
provider (mmsr_bench/standins/faults.py, drawn with probability 1 so every attempt gets it),
through a live ``mmsr serve`` app on loopback. A fault of the model server is the request's
failure with the right status and a message that names no internal URL or key; a fault of the
search provider is a failed search the model is told about, and the request still answers."""

from __future__ import annotations

import contextlib
import random
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from mmsr_bench.standins import ModelConfig, WebConfig, model_app, serve_standin, web_app
from mmsr_bench.standins.faults import MODEL_FAULTS, WEB_FAULTS, parse_faults
from mmsr_serve.api import Settings, create_app

MODEL = "mmsr-standin"
BACKEND_KEY = "sk-backend-secret-1234"
QUESTION = {"role": "user", "content": "Who designed the glass heron?"}


@contextlib.contextmanager
def gateway(model: ModelConfig, web: WebConfig | None = None, **settings: Any) -> Iterator[tuple[str, str]]:
    """(gateway URL, model stand-in URL), both live on 127.0.0.1."""
    with contextlib.ExitStack() as stack:
        model_url = stack.enter_context(serve_standin(model_app(model)))
        env = {"SEARXNG_BASE_URL": stack.enter_context(serve_standin(web_app(web or WebConfig())))}
        values = {"text_search": "searxng", "page_reader": "none"}
        options = {
            "model": MODEL,
            "backend_urls": [model_url + "/v1"],
            "backend_api_key": BACKEND_KEY,
            **values,
            **settings,
        }
        app = create_app(Settings.load(env=env, **options))
        yield stack.enter_context(serve_standin(app)), model_url


def ask(url: str, **body: Any) -> httpx.Response:
    payload = {"model": MODEL, "messages": [QUESTION], **body}
    return httpx.post(url + "/v1/chat/completions", json=payload, timeout=30, trust_env=False)


def test_fault_specs_are_checked() -> None:
    faults = parse_faults("5xx=0.25, hang=0.25", MODEL_FAULTS)
    rng = random.Random(0)
    drawn = [faults.draw(rng) for _ in range(4000)]
    assert 0.2 < drawn.count("5xx") / 4000 < 0.3 and 0.2 < drawn.count("hang") / 4000 < 0.3
    assert drawn.count(None) > 1600
    for bad, message in [
        ("5xx", "kind=probability"),
        ("teapot=0.1", "kind one of"),
        ("5xx=lots", "not a number"),
        ("5xx=1.5", "between 0 and 1"),
        ("5xx=0.6,429=0.6", "more than 1"),
    ]:
        with pytest.raises(ValueError, match=message):
            parse_faults(bad, MODEL_FAULTS)
    with pytest.raises(ValueError, match="kind one of"):
        parse_faults("cut=0.1", WEB_FAULTS)  # a search answer is not a stream


@pytest.mark.parametrize(
    ("fault", "status"),
    [
        pytest.param("malformed", 502, marks=pytest.mark.slow),  # retried (backoff), then 502
        ("cut", 502),  # a stream that stops after its first text: not retried, never an answer
        ("reset", 502),
        pytest.param("echo", 502, marks=pytest.mark.slow),  # a 500: retried too
    ],
)
@pytest.mark.parametrize("stream", [False, True])
def test_model_server_faults_fail_the_request_cleanly(fault: str, status: int, stream: bool) -> None:
    model = ModelConfig(mix="direct=1", faults=f"{fault}=1")
    with gateway(model) as (url, model_url):
        response = ask(url, stream=stream)
        healthy = httpx.get(url + "/health", timeout=5, trust_env=False)
    text = response.text
    assert BACKEND_KEY not in text and model_url not in text and "127.0.0.1" not in text
    assert healthy.status_code == 200  # the server keeps serving
    if not stream:
        assert response.status_code == status, text
        assert response.json()["error"]["message"]
        return
    # Streamed: the failure comes as the status (nothing sent yet) or, once the stream has
    # started, as an error event followed by [DONE]; never as a stream that just stops.
    if response.status_code == 200:
        assert '"error"' in text and text.rstrip().endswith("data: [DONE]"), text
    else:
        assert response.status_code == status, text


@pytest.mark.slow
@pytest.mark.parametrize(("fault", "status"), [("5xx", 502), ("429", 429)])
def test_refusals_are_retried_then_reported(fault: str, status: int) -> None:
    model = ModelConfig(mix="direct=1", faults=f"{fault}=1")
    with gateway(model) as (url, model_url):
        response = ask(url)
        stats = httpx.get(model_url + "/standin/stats", timeout=5, trust_env=False).json()
    assert response.status_code == status, response.text
    assert stats["faults"] == {fault: 4}  # the first attempt and three retries
    assert model_url not in response.text


def test_a_hung_model_server_ends_at_the_request_deadline() -> None:
    model = ModelConfig(mix="direct=1", faults="hang=1", hang_s=30)
    with gateway(model, request_timeout_s=1.5) as (url, _):
        started = time.monotonic()
        response = ask(url)
        took = time.monotonic() - started
    assert response.status_code == 504, response.text
    assert took < 5


def test_a_dripping_model_server_still_answers() -> None:
    model = ModelConfig(mix="direct=1", reasoning_words=4, faults="drip=1", drip_s=0.02)
    with gateway(model) as (url, _):
        response = ask(url, stream=True)
    assert response.status_code == 200 and '"error"' not in response.text
    assert response.text.rstrip().endswith("data: [DONE]")


@pytest.mark.parametrize("fault", ["5xx", "429", "malformed", "reset", "hang"])
def test_search_provider_faults_are_failed_searches_not_failed_requests(fault: str) -> None:
    model = ModelConfig(mix="text=1", reasoning_words=4)
    web = WebConfig(faults=f"{fault}=1", hang_s=30)
    with gateway(model, web, search_timeout_s=1.0) as (url, _):
        started = time.monotonic()
        response = ask(url)
        took = time.monotonic() - started
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["choices"][0]["message"]["content"]
    assert body["usage"]["search_calls"] == {"image": 0, "text": 1}
    assert took < 10  # retries inside the search deadline, not 3 x the provider's timeout
