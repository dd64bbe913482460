"""SafeFetcher against a real HTTP server on 127.0.0.1 (allowed explicitly) and a fake resolver."""

from __future__ import annotations

import asyncio
import functools
import gzip
import ipaddress
import socket
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
import trustme
from PIL import Image

from mmsr_serve.errors import ImageError
from mmsr_serve.fetch import FetchError, SafeFetcher, is_public_address
from mmsr_serve.images import encode_image, load_image

PNG = encode_image(Image.new("RGB", (4, 4), (10, 20, 30)))
Route = tuple[int, dict[str, str], bytes]


@dataclass
class Server:
    """A tiny HTTP/1.1 server: one route table, one request per connection."""

    base: str = ""
    requests: list[tuple[str, dict[str, str]]] = field(default_factory=list)

    def route(self, path: str) -> Route:
        redirects = {
            "/to-image": "/image.png",
            "/to-metadata": "http://169.254.169.254/latest/meta-data/",
            "/to-private": "http://10.0.0.1/admin",
            "/to-loopback-v6": "http://[::1]/",
            "/to-file": "file:///etc/passwd",
            "/loop": "/loop",
        }
        if path in redirects:
            return 302, {"Location": redirects[path]}, b""
        if path == "/image.png":
            return 200, {"Content-Type": "image/png"}, PNG
        if path == "/page":
            return 200, {"Content-Type": "text/html; charset=utf-8"}, b"<html>hello</html>"
        if path == "/big-declared":
            return 200, {"Content-Type": "application/octet-stream"}, b"x" * 50_000
        return 404, {"Content-Type": "text/plain"}, b"not found"

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            _, path, _ = (await reader.readline()).decode().split(" ", 2)
            headers = {}
            while (line := (await reader.readline()).decode().strip()) != "":
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
            self.requests.append((path, headers))
            if path == "/slow":
                await asyncio.sleep(5)
            if path == "/big-streamed":  # no Content-Length: chunked, 10 x 10 kB
                writer.write(
                    b"HTTP/1.1 200 OK\r\nContent-Type: image/png\r\nTransfer-Encoding: chunked\r\n\r\n"
                )
                for _ in range(10):
                    writer.write(b"%x\r\n%s\r\n" % (10_000, b"y" * 10_000))
                    await writer.drain()
                writer.write(b"0\r\n\r\n")
            else:
                status, extra, body = self.route(path)
                head = [f"HTTP/1.1 {status} X", f"Content-Length: {len(body)}", "Connection: close"]
                head += [f"{k}: {v}" for k, v in extra.items()]
                writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + body)
            await writer.drain()
        except (ConnectionError, ValueError):
            pass
        finally:
            writer.close()


@pytest.fixture
async def server() -> AsyncIterator[Server]:
    state = Server()
    srv = await asyncio.start_server(state.handle, "127.0.0.1", 0)
    state.base = f"http://127.0.0.1:{srv.sockets[0].getsockname()[1]}"
    async with srv:
        yield state
        srv.close()


def _fake_resolver(table: dict[str, list[str]]) -> Callable[..., Awaitable[list[Any]]]:
    async def getaddrinfo(host: str, port: int, **kwargs: Any) -> list[Any]:
        if host not in table:
            raise socket.gaierror(socket.EAI_NONAME, "unknown host")
        out = []
        for ip in table[host]:
            family = socket.AF_INET6 if ":" in ip else socket.AF_INET
            out.append((family, socket.SOCK_STREAM, 6, "", (ip, port)))
        return out

    return getaddrinfo


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/",
        "http://127.1.2.3:8080/x",
        "http://localhost/",
        "http://[::1]/",
        "http://10.1.2.3/",
        "http://172.16.0.1/",
        "http://192.168.1.1/",
        "http://169.254.169.254/latest/meta-data/",
        "http://[fe80::1]/",
        "http://[::ffff:127.0.0.1]/",
        "http://[::ffff:10.0.0.1]/",
        "http://0.0.0.0/",
        "http://[::]/",
        "http://100.64.0.1/",
        "http://224.0.0.1/",
        "http://240.0.0.1/",
        "http://2130706433/",
    ],
)
async def test_non_public_addresses_are_refused(url: str) -> None:
    with pytest.raises(FetchError, match="non-public"):
        await SafeFetcher(timeout_s=5).fetch(url)


@pytest.mark.parametrize(
    "url",
    ["file:///etc/passwd", "ftp://example.com/x", "gopher://example.com/", "data:,hi", "//example.com/x"],
)
async def test_only_http_and_https(url: str) -> None:
    with pytest.raises(FetchError, match="only http and https"):
        await SafeFetcher().fetch(url)


async def test_credentials_and_garbage_are_refused() -> None:
    with pytest.raises(FetchError, match="credentials"):
        await SafeFetcher().fetch("http://user:pw@example.com/")
    with pytest.raises(FetchError):
        await SafeFetcher().fetch("http://exa mple.com:99999/")


async def test_loopback_is_refused_by_default_even_for_a_live_server(server: Server) -> None:
    with pytest.raises(FetchError):
        await SafeFetcher().fetch(f"{server.base}/image.png")
    with pytest.raises(ImageError):
        await load_image(f"{server.base}/image.png")  # images.py goes through the safe fetcher
    assert server.requests == []


async def test_allowed_loopback_serves_images(server: Server) -> None:
    fetcher = SafeFetcher(allow=["127.0.0.1"])
    fetched = await fetcher.fetch(f"{server.base}/image.png")
    assert (fetched.status, fetched.content_type, fetched.data) == (200, "image/png", PNG)
    assert await fetcher.fetch_image(f"{server.base}/image.png") == PNG
    image = await load_image(f"{server.base}/image.png", fetch=fetcher.fetch_image)
    assert image.size == (4, 4) and image.url == f"{server.base}/image.png"


async def test_redirects_are_followed_and_rechecked(server: Server) -> None:
    fetcher = SafeFetcher(allow=["127.0.0.0/8"], max_redirects=3)
    fetched = await fetcher.fetch(f"{server.base}/to-image")
    assert fetched.url == f"{server.base}/image.png" and fetched.data == PNG
    for path in ("/to-metadata", "/to-private", "/to-loopback-v6"):
        with pytest.raises(FetchError, match="non-public"):
            await fetcher.fetch(server.base + path)
    with pytest.raises(FetchError, match="only http and https"):
        await fetcher.fetch(f"{server.base}/to-file")
    with pytest.raises(FetchError, match="redirected more than 3 times"):
        await fetcher.fetch(f"{server.base}/loop")


async def test_size_limits(server: Server) -> None:
    fetcher = SafeFetcher(allow=["127.0.0.1"], max_bytes=20_000)
    with pytest.raises(FetchError, match="50000 bytes"):
        await fetcher.fetch(f"{server.base}/big-declared")
    with pytest.raises(FetchError, match="larger than the 20000 bytes"):
        await fetcher.fetch(f"{server.base}/big-streamed")
    assert len((await fetcher.fetch(f"{server.base}/big-streamed", max_bytes=200_000)).data) == 100_000
    with pytest.raises(ImageError):
        await fetcher.fetch_image(f"{server.base}/big-streamed")


async def test_content_types_and_statuses(server: Server) -> None:
    fetcher = SafeFetcher(allow=["127.0.0.1"])
    with pytest.raises(ImageError, match="text/html"):
        await fetcher.fetch_image(f"{server.base}/page")
    page = await fetcher.fetch(f"{server.base}/page", accept=("text/html", "text/plain"))
    assert page.content_type == "text/html" and page.data == b"<html>hello</html>"
    with pytest.raises(FetchError) as err:
        await fetcher.fetch(f"{server.base}/missing")
    assert err.value.status == 404


async def test_overall_timeout(server: Server) -> None:
    with pytest.raises(FetchError, match=r"longer than 0\.1 s"):
        await SafeFetcher(allow=["127.0.0.1"], timeout_s=0.1).fetch(f"{server.base}/slow")


async def test_one_private_address_among_public_ones_is_enough_to_refuse(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    resolver = _fake_resolver(
        {"mixed.test": ["93.184.215.14", "10.0.0.7"], "v6.test": ["2606:4700::1", "fc00::1"]}
    )
    monkeypatch.setattr(asyncio.get_running_loop(), "getaddrinfo", resolver)
    for host in ("mixed.test", "v6.test"):
        with pytest.raises(FetchError, match="non-public"):
            await SafeFetcher().fetch(f"https://{host}/")
    with pytest.raises(FetchError, match="cannot resolve"):
        await SafeFetcher().fetch("https://nowhere.test/")


async def test_connects_to_the_checked_address_with_the_original_host(
    server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The hostname is resolved once, checked, and the connection goes to that address (no second
    lookup that a rebinding DNS server could answer differently); the Host header is unchanged."""
    port = server.base.rsplit(":", 1)[1]
    resolver = _fake_resolver({"pictures.test": ["127.0.0.1"]})
    monkeypatch.setattr(asyncio.get_running_loop(), "getaddrinfo", resolver)
    for allow in (["127.0.0.1"], ["pictures.test"]):
        fetched = await SafeFetcher(allow=allow).fetch(f"http://pictures.test:{port}/image.png")
        assert fetched.data == PNG and fetched.url == f"http://pictures.test:{port}/image.png"
    assert [h["host"] for _, h in server.requests] == [f"pictures.test:{port}"] * 2
    with pytest.raises(FetchError, match="non-public"):
        await SafeFetcher(allow=["other.test"]).fetch(f"http://pictures.test:{port}/image.png")


@pytest.mark.parametrize(
    ("address", "public"),
    [
        ("8.8.8.8", True),
        ("2606:4700:4700::1111", True),
        ("::ffff:8.8.8.8", True),
        ("127.0.0.1", False),
        ("::1", False),
        ("10.0.0.1", False),
        ("169.254.169.254", False),
        ("fe80::1", False),
        ("fec0::1", False),
        ("fd00::1", False),
        ("::ffff:169.254.169.254", False),
        ("::127.0.0.1", False),
        ("2002:7f00:1::", False),  # 6to4 of 127.0.0.1
        ("64:ff9b::a00:1", False),  # NAT64 of 10.0.0.1
        ("64:ff9b::808:808", True),  # NAT64 of 8.8.8.8
        ("ff02::1", False),
        ("192.0.2.1", False),  # documentation range
        ("255.255.255.255", False),
    ],
)
def test_is_public_address(address: str, public: bool) -> None:
    assert is_public_address(ipaddress.ip_address(address)) is public


async def test_https_keeps_the_hostname_for_tls_and_tries_each_address(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The connection goes to the checked addresses in turn (nothing listens on the first), while
    TLS still names and verifies the URL's host: its certificate is for ``secure.test``."""
    ca = trustme.CA()
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("secure.test").configure_cert(server_ctx)
    server_names: list[str | None] = []
    server_ctx.sni_callback = lambda _sock, name, _ctx: server_names.append(name)  # type: ignore[assignment]
    requests: list[tuple[str, str]] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            _, path, _ = (await reader.readline()).decode().split(" ", 2)
            host = ""
            while (line := (await reader.readline()).decode().strip()) != "":
                name, _, value = line.partition(":")
                host = value.strip() if name.lower() == "host" else host
            requests.append((path, host))
            head = f"HTTP/1.1 200 OK\r\nContent-Type: image/png\r\nContent-Length: {len(PNG)}\r\n\r\n"
            writer.write(head.encode() + PNG)
            await writer.drain()
        except (ConnectionError, ssl.SSLError, ValueError):
            pass
        finally:
            writer.close()

    srv = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=server_ctx)
    port = srv.sockets[0].getsockname()[1]
    table = {"secure.test": ["127.0.0.2", "127.0.0.1"], "other.test": ["127.0.0.1"]}
    monkeypatch.setattr(asyncio.get_running_loop(), "getaddrinfo", _fake_resolver(table))
    client_ctx = ssl.create_default_context()
    ca.configure_trust(client_ctx)
    fetcher = SafeFetcher(allow=["127.0.0.0/8"], ssl_context=client_ctx)
    async with srv:
        assert await fetcher.fetch_image(f"https://secure.test:{port}/a.png?x=1") == PNG
        assert requests == [("/a.png?x=1", f"secure.test:{port}")] and server_names == ["secure.test"]
        with pytest.raises(FetchError, match="cannot connect"):  # the certificate is not other.test's
            await fetcher.fetch(f"https://other.test:{port}/a.png")
        table["secure.test"] = ["127.0.0.2"]  # only an address where nothing listens: no other lookup
        with pytest.raises(FetchError, match="cannot connect"):
            await fetcher.fetch(f"https://secure.test:{port}/a.png")
        assert len(requests) == 1
        srv.close()


@functools.cache
def _bomb() -> bytes:
    """~50 MB of zeros gzipped twice: a few hundred bytes on the wire (compressed once per run)."""
    return gzip.compress(gzip.compress(b"\0" * 50_000_000))


def _gzip_server(encoding: str, body: bytes) -> tuple[object, int]:
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "image/png")
            self.send_header("Content-Encoding", encoding)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    # shutdown() waits for serve_forever to notice: it looks every poll_interval (0.5 s by default)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True).start()
    return server, server.server_port


@pytest.mark.parametrize("encoding", ["gzip, gzip", "br", "zstd"])
async def test_stacked_or_unknown_content_encodings_are_refused(encoding: str) -> None:
    server, port = _gzip_server(encoding, _bomb())
    try:
        with pytest.raises(FetchError, match="unsupported content encoding"):
            await SafeFetcher(allow=["127.0.0.1"], max_bytes=1_000_000).fetch(f"http://127.0.0.1:{port}/x")
    finally:
        server.shutdown()  # type: ignore[attr-defined]


async def test_a_gzip_body_is_bounded_after_decompression() -> None:
    server, port = _gzip_server("gzip", gzip.compress(b"\0" * 5_000_000))  # 5 kB on the wire
    try:
        with pytest.raises(FetchError, match="larger than the 1000000 bytes allowed"):
            await SafeFetcher(allow=["127.0.0.1"], max_bytes=1_000_000).fetch(f"http://127.0.0.1:{port}/x")
        fetched = await SafeFetcher(allow=["127.0.0.1"], max_bytes=6_000_000).fetch(
            f"http://127.0.0.1:{port}/x"
        )
        assert fetched.data == b"\0" * 5_000_000
    finally:
        server.shutdown()  # type: ignore[attr-defined]


async def test_keepalive_reuses_a_connection_per_host_name_and_still_checks_every_fetch(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    connections: list[list[str]] = []  # the Host headers each connection carried

    async def keep_alive(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        hosts: list[str] = []
        connections.append(hosts)
        try:
            while request := await reader.readline():
                assert request.startswith(b"GET ")
                while (line := (await reader.readline()).decode().strip()) != "":
                    name, _, value = line.partition(":")
                    if name.lower() == "host":
                        hosts.append(value.strip())
                body = b"<html>kept</html>"
                head = f"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: {len(body)}\r\n\r\n"
                writer.write(head.encode() + body)
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()

    srv = await asyncio.start_server(keep_alive, "127.0.0.1", 0)
    port = srv.sockets[0].getsockname()[1]
    table = {"a.test": ["127.0.0.1"], "b.test": ["127.0.0.1"]}
    monkeypatch.setattr(asyncio.get_running_loop(), "getaddrinfo", _fake_resolver(table))
    fetcher = SafeFetcher(allow=["127.0.0.1"], keepalive=True)
    async with srv:
        for host in ("a.test", "a.test", "b.test", "a.test"):
            assert (await fetcher.fetch(f"http://{host}:{port}/")).data == b"<html>kept</html>"
        # two connections: one per host name (the same address never carries the other name)
        assert sorted(connections) == sorted([[f"a.test:{port}"] * 3, [f"b.test:{port}"]])
        table["a.test"] = [
            "10.0.0.8"
        ]  # the name moved to a private address: the kept connection is no excuse
        with pytest.raises(FetchError, match="non-public"):
            await fetcher.fetch(f"http://a.test:{port}/")
        await fetcher.aclose()
        srv.close()


async def test_an_allow_entry_may_name_its_port(server: Server, monkeypatch: pytest.MonkeyPatch) -> None:
    port = int(server.base.rsplit(":", 1)[1])
    resolver = _fake_resolver({"pictures.test": ["127.0.0.1"]})
    monkeypatch.setattr(asyncio.get_running_loop(), "getaddrinfo", resolver)
    for allow in ([f"127.0.0.1:{port}"], [f"pictures.test:{port}"], ["127.0.0.0/8"]):
        fetched = await SafeFetcher(allow=allow).fetch(f"http://pictures.test:{port}/image.png")
        assert fetched.data == PNG
    for allow in ([f"127.0.0.1:{port + 1}"], [f"pictures.test:{port + 1}"], [f"[::1]:{port}"]):
        with pytest.raises(FetchError, match="non-public"):  # another port (or address) only
            await SafeFetcher(allow=allow).fetch(f"http://pictures.test:{port}/image.png")


def test_kept_connections_are_closed_with_each_event_loop() -> None:
    """A fetcher used under several ``asyncio.run`` calls (training steps do): each loop's session
    is closed when that loop ends, and the next loop gets a session of its own."""
    import gc
    import warnings

    server, port = _gzip_server("identity", PNG)
    fetcher = SafeFetcher(allow=["127.0.0.1"], keepalive=True)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ResourceWarning)
            for _ in range(3):
                fetched = asyncio.run(fetcher.fetch(f"http://127.0.0.1:{port}/x"))
                assert fetched.data == PNG
                gc.collect()
            asyncio.run(fetcher.aclose())
            gc.collect()
        assert not [w for w in caught if "Unclosed" in str(w.message)]
    finally:
        server.shutdown()  # type: ignore[attr-defined]


class _Live:
    """A keep-alive HTTP server on 127.0.0.1 that counts its open connections; ``/slow`` answers
    after 0.5 s, ``/many-headers`` with 100 header lines."""

    def __init__(self) -> None:
        self.open = 0
        self.opened = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.open += 1
        self.opened += 1
        try:
            while request := await reader.readline():
                path = request.split()[1]
                while (await reader.readline()) not in (b"\r\n", b""):
                    pass
                if path == b"/slow":
                    await asyncio.sleep(0.5)
                extra = (
                    "".join(f"X-Filler-{i}: {i}\r\n" for i in range(100)) if path == b"/many-headers" else ""
                )
                head = f"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\n{extra}Content-Length: 4\r\n\r\n"
                writer.write(head.encode() + b"page")
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            self.open -= 1
            writer.close()


async def _until(condition: Callable[[], bool]) -> None:
    for _ in range(100):
        if condition():
            return
        await asyncio.sleep(0.01)


async def test_kept_connections_are_bounded_per_host_name_and_in_host_names(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """At most 4 connections kept per host name and 64 host names kept (a fetch beyond goes on a
    connection closed after it): a burst or a crawl of many hosts leaves few sockets open."""
    live = _Live()
    srv = await asyncio.start_server(live.handle, "127.0.0.1", 0)
    port = srv.sockets[0].getsockname()[1]
    table = {f"h{i}.test": ["127.0.0.1"] for i in range(80)}
    monkeypatch.setattr(asyncio.get_running_loop(), "getaddrinfo", _fake_resolver(table))
    fetcher = SafeFetcher(allow=["127.0.0.1"], keepalive=True)
    async with srv:
        pages = await asyncio.gather(*(fetcher.fetch(f"http://h0.test:{port}/slow") for _ in range(12)))
        assert {p.data for p in pages} == {b"page"} and live.opened == 12
        await _until(lambda: live.open <= 4)
        assert live.open == 4  # the 8 beyond were closed after their fetch
        for i in range(1, 80):
            assert (await fetcher.fetch(f"http://h{i}.test:{port}/")).data == b"page"
        await _until(lambda: live.open <= 4 + 63)
        assert live.open == 4 + 63  # h0's 4, one each of 63 more host names; 16 fetches closed theirs
        await fetcher.aclose()
        await _until(lambda: live.open == 0)
        assert live.open == 0
        srv.close()


async def test_a_loop_in_another_thread_leaves_this_loops_fetches_alone() -> None:
    """``run_sync`` in training runs a second event loop in a worker thread while the first one
    runs: each has its own session, and the second ending does not close the first's."""
    live = _Live()
    srv = await asyncio.start_server(live.handle, "127.0.0.1", 0)
    base = f"http://127.0.0.1:{srv.sockets[0].getsockname()[1]}"
    fetcher = SafeFetcher(allow=["127.0.0.1"], keepalive=True, timeout_s=5)
    async with srv:
        assert (await fetcher.fetch(base + "/")).data == b"page"
        slow = asyncio.ensure_future(fetcher.fetch(base + "/slow"))
        await asyncio.sleep(0.05)
        other = await asyncio.to_thread(asyncio.run, fetcher.fetch(base + "/"))
        assert other.data == b"page"
        assert (await slow).data == b"page"
        await fetcher.aclose()
        srv.close()


async def test_bad_idna_hosts_and_too_many_headers_are_fetch_errors(server: Server) -> None:
    fetcher = SafeFetcher(allow=["127.0.0.1"])
    for url in ("http://xn--/", "http://xn--a/", "http://xn--zz-/"):
        with pytest.raises(FetchError, match="invalid URL"):
            await fetcher.fetch(url)
    live = _Live()
    srv = await asyncio.start_server(live.handle, "127.0.0.1", 0)
    async with srv:
        with pytest.raises(FetchError, match="cannot fetch"):
            await fetcher.fetch(f"http://127.0.0.1:{srv.sockets[0].getsockname()[1]}/many-headers")
        srv.close()
