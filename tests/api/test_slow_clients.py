"""Clients that hold connections without finishing a request (issue 13, item 8): headers and
bodies have deadlines, so a few hundred such sockets cannot make the server unreachable."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from mmsr_serve.api.app import create_app
from mmsr_serve.api.protocol import guarded_protocol
from mmsr_serve.api.settings import Settings
from mmsr_serve.backends import ScriptedBackend
from tests.api.live import LiveServer, serve_in_thread

TIMEOUT_S = 0.3


@pytest.fixture(scope="module")
def server() -> Iterator[LiveServer]:
    protocol = guarded_protocol(TIMEOUT_S)
    if protocol is None:
        pytest.skip("httptools is not installed")
    app = create_app(Settings(model="m", client_timeout_s=TIMEOUT_S), backend=ScriptedBackend())
    with serve_in_thread(app, http=protocol) as live:
        yield live


def _connect(server: LiveServer) -> socket.socket:
    host, port = server.url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=5)  # every wait below ends by 5 s
    return sock


def _read_all(sock: socket.socket) -> bytes:
    """What the server sends until it closes the connection (a 5 s socket timeout fails the test)."""
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data


def test_headers_never_finished_are_cut_off(server: LiveServer) -> None:
    with _connect(server) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")  # and then nothing
        assert _read_all(sock) == b""  # closed, without an answer


def test_a_connection_that_sends_nothing_is_closed(server: LiveServer) -> None:
    with _connect(server) as sock:
        assert _read_all(sock) == b""


def test_a_body_shorter_than_its_content_length_is_408(server: LiveServer) -> None:
    head = b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
    with _connect(server) as sock:
        sock.sendall(head + b"Content-Length: 100\r\n\r\n" + b'{"messages": [')
        answer = _read_all(sock)
    assert answer.startswith(b"HTTP/1.1 408") and b"request_timeout" in answer


def test_whole_requests_still_work_and_stay_kept_alive(server: LiveServer) -> None:
    with _connect(server) as sock:
        for _ in range(2):
            sock.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            answer = sock.recv(65536)
            assert answer.startswith(b"HTTP/1.1 200") and b'"ok"' in answer


@pytest.mark.slow
def test_a_streaming_client_that_stops_reading_frees_its_slot() -> None:
    # One slot; a client opens a stream of a long answer and reads nothing. Its sends stall once
    # the socket buffers are full; after stream_send_timeout_s it is dropped and the slot is free.
    import time

    import httpx

    answer = " ".join(["w" * 10_000] * 1000)  # 1,000 "words" (within max_tokens), 10 MB: more than any buffer
    backend = ScriptedBackend([answer, "ok"])
    settings = Settings(model="m", max_concurrent_requests=1, stream_send_timeout_s=0.5)
    with serve_in_thread(create_app(settings, backend=backend)) as live:
        body = b'{"messages": [{"role": "user", "content": "Q?"}], "search_mode": "off", "stream": true}'
        head = b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        with _connect(live) as stalled:
            stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            stalled.sendall(head + b"Content-Length: %d\r\n\r\n" % len(body) + body)
            question = {"messages": [{"role": "user", "content": "Q?"}], "search_mode": "off"}
            deadline, status = time.monotonic() + 20, 0
            while time.monotonic() < deadline:  # 429 while the stalled stream holds the slot
                status = httpx.post(live.url + "/v1/chat/completions", json=question, timeout=10).status_code
                if status == 200:
                    break
                time.sleep(0.2)
            assert status == 200
