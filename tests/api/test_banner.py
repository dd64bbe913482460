"""The start-up banner: what is served where, with no secret in it, once the server is ready."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from mmsr_serve.api import Settings, create_app
from mmsr_serve.api.banner import banner
from mmsr_serve.backends import ScriptedBackend


def test_banner_names_model_url_backend_tools_and_keys_without_secrets(tmp_path: Path) -> None:
    settings = Settings.load(
        env={},
        model="mmsr-7b",
        host="0.0.0.0",
        port=9001,
        backend_urls=["http://admin:hunter22@10.0.0.5:8000/v1"],
        backend_api_key="sk-backend-9876",
        api_keys=["client-key-5555"],
        index=tmp_path,
    )
    text = banner(settings)
    assert "'mmsr-7b' at http://127.0.0.1:9001/v1" in text  # a wildcard bind shows a reachable address
    assert "http://10.0.0.5:8000/v1" in text and "image: local; text: local" in text
    assert f"index     {tmp_path}" in text and "API keys  on (1 accepted)" in text
    chat = "mmsr chat 'What can you search for?' --url http://127.0.0.1:9001/v1 --api-key $MMSR_API_KEY"
    assert chat in text
    for secret in ("hunter22", "admin", "sk-backend-9876", "client-key-5555"):
        assert secret not in text


def test_open_server_says_so_and_ipv6_binds_are_bracketed(tmp_path: Path) -> None:
    settings = Settings.load(env={}, model="m", host="::1", port=8080, index=tmp_path)
    text = banner(settings)
    assert "http://[::1]:8080/v1" in text and "API keys  off" in text and "--api-key" not in text


def test_the_server_logs_the_banner_when_ready(corpus_dir: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="uvicorn.error")
    settings = Settings.load(env={}, model="mmsr-test", index=corpus_dir)
    app = create_app(settings, backend=ScriptedBackend(["<answer>x</answer>"]))
    with TestClient(app):
        pass
    assert any("serving 'mmsr-test' at http://127.0.0.1:8080/v1" in r.getMessage() for r in caplog.records)


def test_an_unreachable_model_server_is_a_warning_at_start(
    corpus_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    import socket
    import time

    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    caplog.set_level(logging.WARNING)
    url = f"http://127.0.0.1:{port}/v1"
    settings = Settings.load(env={}, model="m", backend_urls=[url], index=corpus_dir)
    with TestClient(create_app(settings)):
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not any("not ready" in r.getMessage() for r in caplog.records):
            time.sleep(0.05)
    (warning,) = [r.getMessage() for r in caplog.records if "the model server is not ready" in r.getMessage()]
    assert f"127.0.0.1:{port}" in warning and "GET /ready" in warning
