"""A chat request whose image_url points at a private, loopback or otherwise non-public address
(directly, through DNS or through a redirect) is a 400, and the target is never contacted."""

from __future__ import annotations

import asyncio
import io
import socket
from collections.abc import Iterator
from typing import Any

import pytest
from PIL import Image
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from mmsr_serve.backends import ScriptedBackend
from tests.api.conftest import AppClient, R, user_with_image
from tests.api.live import serve_in_thread

PARAM = "messages[0].content[1].image_url"


class Target:
    """A loopback server that records every request it gets."""

    def __init__(self) -> None:
        self.paths: list[str] = []
        self.port = 0

    async def handle(self, request: Request) -> Response:
        self.paths.append(request.url.path)
        if request.url.path == "/redirect":
            return RedirectResponse(f"http://127.0.0.1:{self.port}/secret.png", 302)
        if request.url.path == "/page.html":
            return Response("<html>hi</html>", media_type="text/html")
        buf = io.BytesIO()
        Image.effect_noise((300, 300), 90).convert("RGB").save(buf, format="PNG")
        return Response(buf.getvalue(), media_type="image/png")


@pytest.fixture
def target() -> Iterator[Target]:
    state = Target()
    app = Starlette(routes=[Route("/{path:path}", state.handle)])
    with serve_in_thread(app) as live:
        state.port = int(live.url.rsplit(":", 1)[1])
        yield state


def fake_dns(table: dict[str, str]) -> Any:
    async def getaddrinfo(host: str, port: int, **kwargs: Any) -> list[Any]:
        if host not in table:
            raise socket.gaierror(socket.EAI_NONAME, "unknown host")
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (table[host], port))]

    return getaddrinfo


async def ask(client: Any, url: str) -> Any:
    return await client.post("/v1/chat/completions", json={"messages": [user_with_image("What is it?", url)]})


def assert_refused(response: Any) -> None:
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert (error["param"], error["code"]) == (PARAM, "invalid_image")


async def test_non_public_image_urls_are_400_and_never_contacted(
    app_client: AppClient, target: Target, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(asyncio.get_running_loop(), "getaddrinfo", fake_dns({"private.test": "127.0.0.1"}))
    client = app_client(ScriptedBackend())
    port = target.port
    urls = [
        f"http://127.0.0.1:{port}/a.png",
        f"http://localhost:{port}/a.png",
        "http://10.1.2.3/a.png",
        "http://172.16.5.4/a.png",
        "http://192.168.0.10/a.png",
        "http://169.254.169.254/latest/meta-data/",
        f"http://[::1]:{port}/a.png",
        f"http://[::ffff:127.0.0.1]:{port}/a.png",
        f"http://private.test:{port}/a.png",  # a hostname that resolves to a private address
        "file:///etc/passwd",
        f"gopher://127.0.0.1:{port}/_a",
    ]
    for url in urls:
        assert_refused(await ask(client, url))
    assert target.paths == []


async def test_a_redirect_to_a_private_address_is_refused_before_following(
    app_client: AppClient, target: Target, monkeypatch: pytest.MonkeyPatch
) -> None:
    # "public.test" plays a public site (allowed explicitly) that redirects to a private address
    monkeypatch.setattr(asyncio.get_running_loop(), "getaddrinfo", fake_dns({"public.test": "127.0.0.1"}))
    client = app_client(ScriptedBackend(), fetch_allow=["public.test"], max_image_bytes=50_000)
    assert_refused(await ask(client, f"http://public.test:{target.port}/redirect"))
    assert target.paths == ["/redirect"]  # the private target itself was never asked
    assert_refused(await ask(client, f"http://public.test:{target.port}/page.html"))  # not an image
    assert_refused(await ask(client, f"http://public.test:{target.port}/big.png"))  # over the byte limit
    ok = app_client(ScriptedBackend([f"{R}<answer>noise</answer>"]), fetch_allow=["public.test"])
    assert (await ask(ok, f"http://public.test:{target.port}/big.png")).status_code == 200
