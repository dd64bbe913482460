"""One access line per request on ``mmsr.access``: id, status, latency, turns, searches, and the
error a client got (as a status or as an error event inside a stream); JSON lines on request."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest

from mmsr_serve.api.cli import log_config
from mmsr_serve.backends import ScriptedBackend
from mmsr_serve.errors import BackendError
from tests.api.conftest import IMAGE_SEARCH, AppClient, R, data_url, user_with_image

ASK = {"messages": [{"role": "user", "content": "Q?"}]}


def lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "mmsr.access"]


@pytest.fixture(autouse=True)
def _capture(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="mmsr.access")


async def test_a_searching_request_logs_its_turns_and_searches(
    app_client: AppClient, local_index: Any, caplog: pytest.LogCaptureFixture
) -> None:
    from PIL import Image

    client = app_client(ScriptedBackend([IMAGE_SEARCH, f"{R}<answer>Ines</answer>"]), local_index)
    picture = data_url(Image.new("RGB", (32, 32), "red"))
    response = await client.post(
        "/v1/chat/completions", json={"messages": [user_with_image("Who made this?", picture)]}
    )
    assert response.status_code == 200
    request_id = response.headers["x-request-id"]
    (line,) = lines(caplog)
    assert line.startswith(f"{request_id} POST /v1/chat/completions 200 ")
    assert "turns=2 searches=image:1,text:0" in line and "error=" not in line


async def test_a_refused_request_names_its_error(
    app_client: AppClient, caplog: pytest.LogCaptureFixture
) -> None:
    client = app_client(ScriptedBackend([]))
    response = await client.post("/v1/chat/completions", json={**ASK, "model": "gpt-9"})
    assert response.status_code == 404
    (line,) = lines(caplog)
    assert " 404 " in line and "turns=0" in line
    assert "error=invalid_request_error: the model 'gpt-9' does not exist" in line
    record = next(r for r in caplog.records if r.name == "mmsr.access")
    assert record.levelno == logging.INFO


async def test_a_backend_failure_logs_at_warning(
    app_client: AppClient, caplog: pytest.LogCaptureFixture
) -> None:
    client = app_client(ScriptedBackend([BackendError("vLLM is down")]))
    assert (await client.post("/v1/chat/completions", json=ASK)).status_code == 502
    record = next(r for r in caplog.records if r.name == "mmsr.access")
    assert record.levelno == logging.WARNING
    assert "502" in record.getMessage() and "error=backend_error: vLLM is down" in record.getMessage()


async def test_an_error_event_inside_a_stream_is_named(
    app_client: AppClient, caplog: pytest.LogCaptureFixture
) -> None:
    client = app_client(ScriptedBackend(["<reason>hmm</reason>", BackendError("replica lost")]))
    async with client.stream("POST", "/v1/chat/completions", json={**ASK, "stream": True}) as response:
        assert response.status_code == 200
        await response.aread()
    (line,) = lines(caplog)
    assert " 200 " in line and "error=backend_error: replica lost" in line


async def test_request_ids_come_from_the_client_when_plain(
    app_client: AppClient, caplog: pytest.LogCaptureFixture
) -> None:
    client = app_client(ScriptedBackend([f"{R}<answer>A</answer>", f"{R}<answer>B</answer>"]))
    mine = await client.post("/v1/chat/completions", json=ASK, headers={"x-request-id": "trace-42.a"})
    assert mine.headers["x-request-id"] == "trace-42.a"
    odd = await client.post("/v1/chat/completions", json=ASK, headers={"x-request-id": "a b\tc"})
    assert odd.headers["x-request-id"] != "a b\tc" and len(odd.headers["x-request-id"]) == 32
    assert lines(caplog)[0].startswith("trace-42.a ")


async def test_probes_log_at_debug_only(app_client: AppClient, caplog: pytest.LogCaptureFixture) -> None:
    client = app_client(ScriptedBackend([]))
    await client.get("/health")
    record = next(r for r in caplog.records if r.name == "mmsr.access")
    assert record.levelno == logging.DEBUG and " GET /health 200 " in record.getMessage()


async def test_json_lines(app_client: AppClient, caplog: pytest.LogCaptureFixture) -> None:
    client = app_client(ScriptedBackend([]), log_format="json")
    await client.post("/v1/chat/completions", json={**ASK, "model": "gpt-9"})
    (line,) = lines(caplog)
    record = json.loads(line)
    assert record["status"] == 404 and record["path"] == "/v1/chat/completions" and record["turns"] == 0
    assert record["searches"] == {"image": 0, "text": 0} and record["latency_ms"] >= 0
    assert record["error"] == {"type": "invalid_request_error", "message": "the model 'gpt-9' does not exist"}


def test_the_servers_log_config_puts_the_access_lines_out() -> None:
    # uvicorn configures only its own loggers: without this the INFO lines would go nowhere
    text = log_config("info", "text")
    assert text["loggers"]["mmsr"] == {"handlers": ["default"], "level": "INFO", "propagate": False}
    assert "mmsr.access" not in text["loggers"]
    as_json = log_config("debug", "json")
    access = as_json["loggers"]["mmsr.access"]
    assert access["level"] == "DEBUG" and access["handlers"] == ["mmsr_json"]
    handler = as_json["handlers"]["mmsr_json"]
    assert as_json["formatters"][handler["formatter"]] == {"format": "%(message)s"}  # bare JSON lines
