"""Keys print as *** and are masked in the log records of the HTTP libraries."""

from __future__ import annotations

import logging

import pytest

from mmsr_serve._secret import Secret, redact


def test_secret_never_prints() -> None:
    key = Secret("sk-test-0123456789abcdef")
    assert "0123456789" not in repr(key) + str(key) + f"{key}" + repr([key])
    assert key.reveal() == "sk-test-0123456789abcdef" and key and not Secret("")
    assert redact("GET /x?api_key=sk-test-0123456789abcdef&q=1") == "GET /x?api_key=***&q=1"
    assert redact("short") == "short"


def test_httpx_log_records_are_masked(caplog: pytest.LogCaptureFixture) -> None:
    Secret("brave-log-test-secret-42")
    caplog.set_level(logging.INFO)
    logging.getLogger("httpx").info(
        "HTTP Request: %s %s", "GET", "https://a.example/?k=brave-log-test-secret-42"
    )
    assert "brave-log-test-secret-42" not in caplog.text and "?k=***" in caplog.text
