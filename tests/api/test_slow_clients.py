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
