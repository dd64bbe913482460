"""Fixtures for the web provider tests: the stand-in providers on loopback, fast retries."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from mmsr_serve.search._http import RetryPolicy
from tests.api.live import serve_in_thread
from tests.search.standins import StandIn

FAST = RetryPolicy(attempts=3, backoff_s=0.001, max_backoff_s=0.01)


@pytest.fixture(scope="module")
def standin_server() -> Iterator[StandIn]:
    state = StandIn()
    with serve_in_thread(state.app) as live:
        state.base = live.url
        yield state


@pytest.fixture
def standin(standin_server: StandIn) -> StandIn:
    """The stand-in providers (one server per test module), with a clean record and script."""
    standin_server.requests.clear()
    standin_server.script.clear()
    standin_server.lens_images.clear()
    standin_server.on_lens_url = None
    return standin_server
