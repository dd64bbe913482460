"""OpenAIBackend against stand-in OpenAI servers: real uvicorn apps on 127.0.0.1.

A :class:`StandIn` answers ``/v1/chat/completions`` in vLLM's streaming shape (role chunk, content
chunks, a finish chunk carrying vLLM's ``stop_reason``, a usage chunk, ``[DONE]``) and applies stop
strings the way vLLM does (the text is cut before the stop string, which is named in
``stop_reason`` unless ``include_stop_str_in_output`` keeps it). Each test queues the answers it
wants with :meth:`StandIn.enqueue`; unqueued requests get a plain reply.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import socket
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field

import pytest
import uvicorn
from PIL import Image
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from mmsr_serve.backends.base import Completion, Delta, GenerateRequest, Message
from mmsr_serve.backends.openai_http import OpenAIBackend
from mmsr_serve.errors import BackendError, BackendTimeout

MODEL = "mmsr-test"


@dataclass
class Reply:
    text: str = "Hello there"
    finish: str = "stop"
    stop_reason: str | int | None = None
    usage: tuple[int, int] = (11, 3)
    pause_s: float = 0.0  # between the first content chunk and the rest
    hold: threading.Event | None = None  # after the first content chunk, wait until it is set (10 s at most)
    break_after_first: bool = False  # drop the connection after the first content chunk


@dataclass
class Fail:
    status: int
    message: str
    retry_after: str | None = None


@dataclass
class Hang:
    seconds: float


@dataclass
class Raw:
    """A 200 text/event-stream answer made of these bytes, sent as they are."""

    pieces: list[bytes]
    gaps_s: list[float] = field(default_factory=list)  # a wait after piece i (none by default)


class StandIn:
    def __init__(self) -> None:
        self.script: deque[Reply | Fail | Hang | Raw] = deque()
        self.requests: list[dict[str, object]] = []
        self.peers: list[object] = []  # the client address of each request (connection reuse)
        self.headers: list[dict[str, str]] = []
        self.models = [MODEL]
        self.epoch = 0  # bumped between tests: a request left hanging by an earlier test stops there
        self.app = Starlette(
            routes=[
                Route("/v1/chat/completions", self.chat, methods=["POST"]),
                Route("/v1/models", self.list_models),
            ]
        )

    def enqueue(self, *actions: Reply | Fail | Hang | Raw) -> None:
        self.script.extend(actions)

    async def list_models(self, request: Request) -> Response:
        return JSONResponse({"object": "list", "data": [{"id": m, "object": "model"} for m in self.models]})

    async def chat(self, request: Request) -> Response:
        body = await request.json()
        self.requests.append(body)
        self.peers.append(request.client)
        self.headers.append(dict(request.headers))
        epoch = self.epoch
        action = self.script.popleft() if self.script else Reply()
        while isinstance(action, Hang):
            await asyncio.sleep(action.seconds)
            if self.epoch != epoch:  # never take a later test's scripted replies
                return Response(status_code=503)
            action = self.script.popleft() if self.script else Reply()
        if isinstance(action, Fail):
            headers = {"retry-after": action.retry_after} if action.retry_after else None
            error = {
                "message": action.message,
                "type": "BadRequestError",
                "param": None,
                "code": action.status,
            }
            return JSONResponse({"error": error}, status_code=action.status, headers=headers)
        if isinstance(action, Raw):
            return StreamingResponse(_pieces(action.pieces, action.gaps_s), media_type="text/event-stream")
        return StreamingResponse(self._events(action, body), media_type="text/event-stream")

    async def _events(self, reply: Reply, body: dict[str, object]) -> AsyncIterator[str]:
        text, stop_reason = reply.text, reply.stop_reason
        for stop in body.get("stop") or []:  # type: ignore[attr-defined]
            if stop in text:
                keep = bool(body.get("include_stop_str_in_output"))
                text = text[: text.index(stop) + (len(stop) if keep else 0)]
                stop_reason = stop
                break

        def chunk(delta: dict[str, str], finish: str | None = None, **extra: object) -> str:
            choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish, **extra}
            payload = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 0, "model": MODEL}
            return f"data: {json.dumps({**payload, 'choices': [choice]})}\n\n"

        yield chunk({"role": "assistant", "content": ""})
        pieces = [text[i : i + 4] for i in range(0, len(text), 4)]
        for i, piece in enumerate(pieces):
            yield chunk({"content": piece})
            if i == 0 and reply.break_after_first:
                raise ConnectionResetError("stand-in drops the connection")
            if i == 0 and reply.pause_s:
                await asyncio.sleep(reply.pause_s)
            if i == 0 and reply.hold is not None:
                await asyncio.to_thread(reply.hold.wait, 10)
        yield chunk({}, reply.finish, stop_reason=stop_reason)
        prompt, completion = reply.usage
        usage = {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
        }
        yield f"data: {json.dumps({'id': 'chatcmpl-1', 'choices': [], 'usage': usage})}\n\n"
        yield "data: [DONE]\n\n"


async def _pieces(pieces: list[bytes], gaps_s: list[float]) -> AsyncIterator[bytes]:
    for index, piece in enumerate(pieces):
        yield piece
        await asyncio.sleep(gaps_s[index] if index < len(gaps_s) else 0)


@dataclass
class Running:
    stand_in: StandIn
    url: str


def _serve(stand_in: StandIn) -> tuple[uvicorn.Server, threading.Thread, str]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)  # see tests/api/live.py
    sock.bind(("127.0.0.1", 0))
    config = uvicorn.Config(stand_in.app, log_level="critical", log_config=None, timeout_graceful_shutdown=1)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.01)
    return server, thread, f"http://127.0.0.1:{sock.getsockname()[1]}/v1"


@pytest.fixture(scope="module")
def servers() -> Iterator[list[Running]]:
    started = [(stand_in, *_serve(stand_in)) for stand_in in (StandIn(), StandIn())]
    yield [Running(stand_in, url) for stand_in, _, _, url in started]
    for _, server, _, _ in started:
        server.should_exit = True  # both stop at once: each takes ~0.2 s
    for _, _, thread, _ in started:
        thread.join(timeout=5)


@pytest.fixture
def a(servers: list[Running]) -> Running:
    servers[0].stand_in.epoch += 1
    servers[0].stand_in.script.clear()
    servers[0].stand_in.requests.clear()
    return servers[0]


@pytest.fixture
def b(servers: list[Running]) -> Running:
    servers[1].stand_in.epoch += 1
    servers[1].stand_in.script.clear()
    servers[1].stand_in.requests.clear()
    return servers[1]


def closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}/v1"


def backend(*urls: str, **kwargs: object) -> OpenAIBackend:
    options: dict[str, object] = {"backoff_s": 0.01, "max_backoff_s": 0.05, "timeout_s": 5.0} | kwargs
    return OpenAIBackend(list(urls), MODEL, **options)  # type: ignore[arg-type]


def ask(text: str = "Hi", **kwargs: object) -> GenerateRequest:
    return GenerateRequest([Message.of("user", text)], **kwargs)  # type: ignore[arg-type]


async def collect(model: OpenAIBackend, request: GenerateRequest) -> tuple[list[str], Completion]:
    deltas: list[str] = []
    async for item in model.stream(request):
        if isinstance(item, Delta):
            deltas.append(item.text)
        else:
            return deltas, item
    raise AssertionError("no Completion")


async def test_streams_deltas_then_completion_with_usage(a: Running) -> None:
    a.stand_in.enqueue(Reply("The Eiffel Tower, 1889.", usage=(42, 7), pause_s=0.05))
    model = backend(a.url)
    deltas, done = await collect(model, ask())
    assert deltas[0] == "The "  # alone: the rest came 50 ms later
    assert len(deltas) > 1 and "".join(deltas) == done.text == "The Eiffel Tower, 1889."
    assert (done.finish_reason, done.prompt_tokens, done.completion_tokens) == ("stop", 42, 7)
    sent = a.stand_in.requests[0]
    assert sent["stream"] is True and sent["stream_options"] == {"include_usage": True}
    assert sent["model"] == MODEL and sent["max_tokens"] == 2048 and "temperature" not in sent
    await model.aclose()


async def test_sampling_parameters_and_extra_body_reach_the_server(a: Running) -> None:
    model = backend(a.url, extra_body={"top_k": 5, "repetition_penalty": 1.05})
    await model.generate(ask(max_tokens=64, temperature=0.7, top_p=0.9, seed=3, stop=("</answer>",)))
    sent = a.stand_in.requests[0]
    assert (sent["max_tokens"], sent["temperature"], sent["top_p"], sent["seed"]) == (64, 0.7, 0.9, 3)
    assert sent["stop"] == ["</answer>"] and sent["top_k"] == 5 and sent["repetition_penalty"] == 1.05
    await model.generate(ask(top_k=20, min_p=0.05, repetition_penalty=1.1))
    sent = a.stand_in.requests[1]  # the operator's extra_body wins over a request's own values
    assert (sent["top_k"], sent["min_p"], sent["repetition_penalty"]) == (5, 0.05, 1.05)
    plain = backend(a.url)
    await plain.generate(ask(top_k=20, min_p=0.05, repetition_penalty=1.1))
    sent = a.stand_in.requests[2]
    assert (sent["top_k"], sent["min_p"], sent["repetition_penalty"]) == (20, 0.05, 1.1)
    await model.aclose()
    await plain.aclose()


def _decode(url: str) -> Image.Image:
    header, _, data = url.partition(",")
    assert header.startswith("data:image/") and header.endswith(";base64")
    return Image.open(io.BytesIO(base64.b64decode(data)))


async def test_images_arrive_as_data_urls_in_part_order(a: Running) -> None:
    red, blue = Image.new("RGB", (20, 10), "red"), Image.new("RGB", (8, 16), "blue")
    message = Message.of("user", "first:", red, "then:", blue, "which?")
    model = backend(a.url, image_format="PNG")
    await model.generate(GenerateRequest([Message.of("system", "Be brief."), message]))
    system, user = a.stand_in.requests[0]["messages"]  # type: ignore[misc]
    assert system == {"role": "system", "content": "Be brief."}
    kinds = [part["type"] for part in user["content"]]
    assert kinds == ["text", "image_url", "text", "image_url", "text"]
    first, second = (_decode(p["image_url"]["url"]) for p in user["content"] if p["type"] == "image_url")
    assert [p["text"] for p in user["content"] if p["type"] == "text"] == ["first:", "then:", "which?"]
    assert (first.format, first.size, first.getpixel((0, 0))) == ("PNG", (20, 10), (255, 0, 0))
    assert (second.size, second.getpixel((0, 0))) == ((8, 16), (0, 0, 255))
    await model.aclose()


async def test_jpeg_images_on_request(a: Running) -> None:
    model = backend(a.url, image_format="JPEG")
    await model.generate(GenerateRequest([Message.of("user", Image.new("RGBA", (16, 16), "green"))]))
    (part,) = a.stand_in.requests[0]["messages"][0]["content"]  # type: ignore[index]
    assert part["image_url"]["url"].startswith("data:image/jpeg;base64,")
    assert _decode(part["image_url"]["url"]).format == "JPEG"
    await model.aclose()


async def test_stop_string_stripped_by_the_server_is_reappended(a: Running) -> None:
    a.stand_in.enqueue(Reply("<reason>need it</reason><search><img></search> and more"))
    model = backend(a.url)
    deltas, done = await collect(model, ask(stop=("</search>", "</answer>")))
    assert done.text == "<reason>need it</reason><search><img></search>"
    assert "".join(deltas) == done.text and done.finish_reason == "stop"
    await model.aclose()


async def test_stop_string_kept_by_the_server_is_not_doubled(a: Running) -> None:
    a.stand_in.enqueue(Reply("<answer>Paris</answer> tail"))
    model = backend(a.url, extra_body={"include_stop_str_in_output": True})
    done = await model.generate(ask(stop=("</answer>",)))
    assert done.text == "<answer>Paris</answer>"
    await model.aclose()


async def test_stop_token_ids_and_length_are_not_text(a: Running) -> None:
    a.stand_in.enqueue(Reply("done", stop_reason=151645), Reply("cut sho", finish="length"))
    model = backend(a.url)
    eos = await model.generate(ask())
    length = await model.generate(ask())
    assert (eos.text, eos.finish_reason) == ("done", "stop")
    assert (length.text, length.finish_reason) == ("cut sho", "length")
    await model.aclose()


async def test_retries_503_and_429_then_succeeds(a: Running) -> None:
    a.stand_in.enqueue(Fail(503, "overloaded"), Fail(429, "slow down", retry_after="0"), Reply("ok"))
    model = backend(a.url, max_retries=3)
    assert (await model.generate(ask())).text == "ok"
    assert len(a.stand_in.requests) == 3
    await model.aclose()


async def test_gives_up_after_max_retries(a: Running) -> None:
    a.stand_in.enqueue(*[Fail(500, "boom")] * 3)
    model = backend(a.url, max_retries=2)
    with pytest.raises(BackendError, match="HTTP 500: boom") as caught:
        await model.generate(ask())
    assert not isinstance(caught.value, BackendTimeout) and len(a.stand_in.requests) == 3
    await model.aclose()


async def test_no_retry_on_400_and_the_servers_message_is_kept(a: Running) -> None:
    a.stand_in.enqueue(Fail(400, "This model's maximum context length is 8192 tokens."))
    model = backend(a.url, max_retries=3)
    with pytest.raises(BackendError, match="maximum context length is 8192") as caught:
        await model.generate(ask())
    assert "HTTP 400" in str(caught.value) and len(a.stand_in.requests) == 1
    await model.aclose()


async def test_timeout_becomes_backend_timeout(a: Running) -> None:
    a.stand_in.enqueue(Hang(1.0))
    model = backend(a.url, timeout_s=0.2, max_retries=0)
    with pytest.raises(BackendTimeout, match=r"no answer within 0\.2 s"):
        await model.generate(ask())
    await model.aclose()


async def test_timeout_before_any_text_is_retried(a: Running) -> None:
    a.stand_in.enqueue(Hang(0.6), Reply("second try"))
    model = backend(a.url, timeout_s=0.2, max_retries=1)
    assert (await model.generate(ask())).text == "second try"
    await model.aclose()


async def test_failure_after_the_first_delta_is_not_retried(a: Running) -> None:
    a.stand_in.enqueue(Reply("Hello world", break_after_first=True), Reply("never sent"))
    model = backend(a.url, max_retries=3)
    deltas: list[str] = []
    with pytest.raises(BackendError):
        async for item in model.stream(ask()):
            assert isinstance(item, Delta)
            deltas.append(item.text)
    assert deltas == ["Hell"] and len(a.stand_in.requests) == 1
    await model.aclose()


async def test_stall_mid_stream_is_a_timeout_without_retry(a: Running) -> None:
    a.stand_in.enqueue(Reply("Hello world", pause_s=0.8))
    model = backend(a.url, timeout_s=0.2, max_retries=3)
    with pytest.raises(BackendTimeout):
        await model.generate(ask())
    assert len(a.stand_in.requests) == 1
    await model.aclose()


async def test_connection_refused_is_retried_then_fails_with_the_url() -> None:
    url = closed_port_url()
    model = backend(url, max_retries=2)
    with pytest.raises(BackendError, match=url.rsplit(":", 1)[1]):
        await model.generate(ask())
    await model.aclose()


async def test_sequential_requests_alternate_between_replicas(a: Running, b: Running) -> None:
    model = backend(a.url, b.url)
    for _ in range(4):
        await model.generate(ask())
    assert (len(a.stand_in.requests), len(b.stand_in.requests)) == (2, 2)
    await model.aclose()


async def test_busy_replica_is_avoided(a: Running, b: Running) -> None:
    release = threading.Event()
    a.stand_in.enqueue(Reply("slow answer", hold=release))
    model = backend(a.url, b.url)
    slow = model.stream(ask())
    try:
        assert isinstance(await anext(slow), Delta)  # a now has one request in flight
        for _ in range(2):  # the round-robin turn alone would send one of these to a
            await model.generate(ask())
        assert (len(a.stand_in.requests), len(b.stand_in.requests)) == (1, 2)
    finally:
        release.set()
    assert [item async for item in slow][-1].text == "slow answer"  # type: ignore[union-attr]
    await model.aclose()


async def test_down_replica_is_skipped(b: Running) -> None:
    accepted = 0

    async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal accepted
        accepted += 1
        writer.close()

    broken = await asyncio.start_server(hang_up, "127.0.0.1", 0)
    port = broken.sockets[0].getsockname()[1]
    model = backend(f"http://127.0.0.1:{port}/v1", b.url, backoff_s=1.0, max_backoff_s=1.0)
    started = time.monotonic()
    for _ in range(3):
        assert (await model.generate(ask())).text == "Hello there"
    assert time.monotonic() - started < 0.9  # switching replica costs no backoff
    assert accepted == 1 and len(b.stand_in.requests) == 3  # tried once, then left alone
    broken.close()
    await model.aclose()


async def test_server_error_moves_to_the_other_replica_without_waiting(a: Running, b: Running) -> None:
    a.stand_in.enqueue(Fail(503, "draining"))
    model = backend(a.url, b.url, backoff_s=1.0, max_backoff_s=1.0)
    started = time.monotonic()
    assert (await model.generate(ask())).extra == {"base_url": b.url}
    assert time.monotonic() - started < 0.9 and len(a.stand_in.requests) == 1
    await model.aclose()


async def test_refused_replica_fails_over(b: Running) -> None:
    model = backend(closed_port_url(), b.url, max_retries=1)
    for _ in range(2):
        assert (await model.generate(ask())).text == "Hello there"
    await model.aclose()


async def test_base_url_without_path_gets_v1(a: Running) -> None:
    model = backend(a.url.removesuffix("/v1"))
    assert (await model.generate(ask())).text == "Hello there"
    await model.aclose()


async def test_check_ready(a: Running, b: Running) -> None:
    one_up = backend(closed_port_url(), b.url)
    await one_up.check_ready()
    all_down = backend(closed_port_url())
    with pytest.raises(BackendError, match="no replica is ready"):
        await all_down.check_ready()
    wrong_model = OpenAIBackend(a.url, "other")
    with pytest.raises(BackendError, match="does not serve 'other'"):
        await wrong_model.check_ready()
    for model in (one_up, all_down, wrong_model):
        await model.aclose()


@pytest.mark.parametrize("finish", [None, "abort"])
async def test_stream_without_a_proper_finish_is_an_error_not_an_answer(
    a: Running, finish: str | None
) -> None:
    # a stream cut short must never become a confident "stop" whose closing tag the loop restores
    a.stand_in.enqueue(Reply("<reason>r</reason><answer>Lis", finish=finish))  # type: ignore[arg-type]
    model = backend(a.url)
    with pytest.raises(BackendError, match="ended without finishing"):
        await model.generate(ask())
    await model.aclose()


async def test_credentials_in_a_base_url_never_reach_errors(a: Running) -> None:
    host_port = a.url.removeprefix("http://").removesuffix("/v1")
    a.stand_in.enqueue(Fail(400, "bad request"))
    model = backend(f"http://admin:s3cret@{host_port}/v1")
    with pytest.raises(BackendError) as caught:
        await model.generate(ask())
    assert "s3cret" not in str(caught.value) and "admin" not in str(caught.value)
    assert host_port in str(caught.value)
    await model.aclose()


def _proxy_env(monkeypatch: pytest.MonkeyPatch, proxy: str, no_proxy: str = "") -> None:
    for name in ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("http_proxy", proxy)
    monkeypatch.setenv("no_proxy", no_proxy)


async def test_the_environments_proxy_carries_the_calls(a: Running, monkeypatch: pytest.MonkeyPatch) -> None:
    # The stand-in plays the proxy: a call to a TEST-NET address (never connected to) reaches it
    # in absolute form, with the proxy's credentials as Proxy-Authorization.
    _proxy_env(monkeypatch, a.url.removesuffix("/v1").replace("http://", "http://us%40r:pa%3Ass@"))
    model = backend("http://192.0.2.7:8000/v1")
    await model.check_ready()  # the readiness probe goes the same way
    deltas, done = await collect(model, ask())
    assert "".join(deltas) == "Hello there" and done.finish_reason == "stop"
    sent = a.stand_in.headers[-1]
    assert sent["host"] == "192.0.2.7:8000"
    assert sent["proxy-authorization"] == "Basic " + base64.b64encode(b"us@r:pa:ss").decode()
    assert sent["authorization"] == "Bearer EMPTY"  # the model server's own header, untouched
    await model.aclose()


async def test_no_proxy_and_an_unsupported_proxy_connect_directly(
    a: Running, monkeypatch: pytest.MonkeyPatch
) -> None:
    _proxy_env(monkeypatch, closed_port_url().removesuffix("/v1"), no_proxy="127.0.0.1")
    model = backend(a.url, max_retries=0)
    assert "".join((await collect(model, ask()))[0]) == "Hello there"
    await model.aclose()
    _proxy_env(monkeypatch, "https://127.0.0.1:9")  # aiohttp speaks to HTTP proxies only
    model = backend(a.url, max_retries=0)
    assert "".join((await collect(model, ask()))[0]) == "Hello there"
    assert "proxy-authorization" not in a.stand_in.headers[-1]
    await model.aclose()


# --- the wire: what openai-python would send, images encoded once, malformed streams ---


def _photo(size: tuple[int, int] = (96, 64)) -> Image.Image:
    """Gradients under blurred noise: photo-like texture (a flat colour would be too easy for JPEG)."""
    import random

    from PIL import ImageFilter

    rng = random.Random(0)
    noise = Image.frombytes("RGB", size, bytes(rng.randrange(256) for _ in range(size[0] * size[1] * 3)))
    gradient = Image.linear_gradient("L").resize(size).convert("RGB")
    return Image.blend(gradient, noise.filter(ImageFilter.GaussianBlur(1.5)), 0.5)


def _psnr(a: Image.Image, b: Image.Image) -> float:
    import math

    pairs = zip(a.convert("RGB").tobytes(), b.convert("RGB").tobytes(), strict=True)
    mse = sum((x - y) ** 2 for x, y in pairs) / (a.width * a.height * 3)
    return math.inf if mse == 0 else 10 * math.log10(255**2 / mse)


async def test_the_body_is_what_openai_python_sends(a: Running) -> None:
    # The backend no longer goes through openai-python; the model server must not notice.
    import openai

    history = [Message.of("system", "Be brief."), Message.of("user", "Hi"), Message.of("assistant", "Hello")]
    request = GenerateRequest(
        [*history, Message.of("user", "And now?")],
        max_tokens=64,
        temperature=0.7,
        top_p=0.9,
        seed=3,
        stop=("</search>", "</answer>"),
    )
    model = backend(a.url, extra_body={"top_k": 5, "include_stop_str_in_output": False})
    await model.generate(request)
    await model.aclose()
    async with openai.AsyncOpenAI(base_url=a.url, api_key="EMPTY", max_retries=0) as client:
        stream = await client.chat.completions.create(
            model=MODEL,
            messages=[
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": "Hi"},
                {"role": "assistant", "content": "Hello"},
                {"role": "user", "content": "And now?"},
            ],
            max_tokens=64,
            temperature=0.7,
            top_p=0.9,
            seed=3,
            stop=["</search>", "</answer>"],
            stream=True,
            stream_options={"include_usage": True},
            extra_body={"top_k": 5, "include_stop_str_in_output": False},
        )
        async for _ in stream:
            pass
    ours, theirs = a.stand_in.requests
    assert ours == theirs


async def test_auto_sends_an_images_own_bytes_when_they_are_its_pixels(a: Running) -> None:
    from mmsr_serve.backends.base import ImagePart
    from mmsr_serve.images import decode_image, encode_image

    jpeg = encode_image(_photo(), "JPEG", quality=80)
    decoded = decode_image(jpeg)
    assert decoded.encoded is not None and decoded.encoded.data == jpeg
    model = backend(a.url)
    await model.generate(GenerateRequest([Message("user", [ImagePart.of(decoded)])]))
    (part,) = a.stand_in.requests[0]["messages"][0]["content"]  # type: ignore[index]
    assert part["image_url"]["url"] == "data:image/jpeg;base64," + base64.b64encode(jpeg).decode()
    await model.aclose()


def test_only_bytes_that_are_exactly_the_pixels_are_kept_for_the_wire() -> None:
    from mmsr_serve.images import decode_image, encode_image

    assert decode_image(encode_image(_photo(), "PNG")).encoded is not None
    assert decode_image(encode_image(_photo(), "WEBP")).encoded is not None
    big = decode_image(encode_image(_photo((200, 100)), "PNG"), max_pixels=5000)
    assert big.size != (200, 100) and big.encoded is None  # downscaled: the bytes are other pixels
    rgba = Image.new("RGBA", (8, 8), (255, 0, 0, 128))
    assert decode_image(encode_image(rgba, "PNG")).encoded is None  # flattened here, not by the server
    assert decode_image(encode_image(_photo(), "BMP")).encoded is None  # not a wire format


async def test_other_images_go_as_jpeg_within_a_stated_loss(a: Running) -> None:
    photo = _photo()
    model = backend(a.url)
    await model.generate(GenerateRequest([Message.of("user", "look:", photo)]))
    _, part = a.stand_in.requests[0]["messages"][0]["content"]  # type: ignore[index]
    sent = _decode(part["image_url"]["url"])
    # The bound: JPEG at quality 95, full chroma, keeps a picture above 40 dB PSNR (the model sees
    # the same picture; artefacts start to show near 30 dB).
    assert sent.format == "JPEG" and sent.size == photo.size and _psnr(sent, photo) > 40
    await model.aclose()


async def test_each_image_is_encoded_once_per_run(a: Running, monkeypatch: pytest.MonkeyPatch) -> None:
    from mmsr_serve.backends import openai_http

    calls: list[tuple[int, int]] = []
    real = openai_http.encode_image

    def counting(image: Image.Image, *args: object, **kwargs: object) -> bytes:
        calls.append(image.size)
        return real(image, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(openai_http, "encode_image", counting)
    messages = [Message.of("user", "look:", _photo())]
    model = backend(a.url)
    for turn in range(3):  # a run: the same parts go out again at every turn
        messages.append(Message.of("assistant", f"turn {turn}"))
        messages.append(Message.of("user", "and this:", _photo((32, 32))))
        await model.generate(GenerateRequest(list(messages)))
    assert sorted(calls) == sorted([(96, 64), (32, 32), (32, 32), (32, 32)])
    first, last = a.stand_in.requests[0], a.stand_in.requests[-1]
    assert first["messages"][0] == last["messages"][0]  # type: ignore[index]
    await model.aclose()


def _event(delta: dict[str, str], finish: str | None = None) -> bytes:
    choice = {"index": 0, "delta": delta, "finish_reason": finish}
    return f"data: {json.dumps({'choices': [choice]})}\n\n".encode()


@pytest.mark.parametrize(
    "bad",
    [b"data: {not json\n\n", b"data: \xff\xfe\n\n", b'data: {"error": {"message": "engine dead"}}\n\n'],
    ids=["invalid-json", "not-utf8", "error-event"],
)
async def test_a_malformed_stream_before_any_text_is_retried(a: Running, bad: bytes) -> None:
    a.stand_in.enqueue(Raw([_event({"role": "assistant"}), bad]), Reply("second try"))
    model = backend(a.url, max_retries=1)
    assert (await model.generate(ask())).text == "second try"
    await model.aclose()


async def test_a_malformed_stream_after_text_fails_without_a_retry(a: Running) -> None:
    a.stand_in.enqueue(Raw([_event({"content": "Hel"}), b"data: {oops\n\n"]), Reply("never sent"))
    model = backend(a.url, max_retries=3)
    with pytest.raises(BackendError, match="malformed stream"):
        await model.generate(ask())
    assert len(a.stand_in.requests) == 1
    await model.aclose()


async def test_events_split_anywhere_and_crlf_lines_are_read(a: Running) -> None:
    whole = (
        _event({"content": "Par"}).replace(b"\n", b"\r\n")
        + b": a comment\n\n"
        + _event({"content": "is"})
        + _event({}, "stop")
        + b"data: [DONE]\n\n"
    )
    a.stand_in.enqueue(Raw([whole[i : i + 7] for i in range(0, len(whole), 7)]))
    model = backend(a.url)
    deltas, done = await collect(model, ask())
    assert ("".join(deltas), done.text, done.finish_reason) == ("Paris", "Paris", "stop")
    assert deltas in (["Par", "is"], ["Paris"])  # apart, or joined when they were read together
    await model.aclose()


async def test_chunks_that_arrive_together_leave_as_one_delta(a: Running) -> None:
    """A reader that fell behind (or a server that sent several chunks in one write) catches up
    with one delta for what is there, not one per chunk: the same text, fewer events downstream."""
    whole = b"".join(_event({"content": piece}) for piece in ("The ", "Eiff", "el T", "ower"))
    a.stand_in.enqueue(Raw([whole + _event({}, "stop") + b"data: [DONE]\n\n"]))
    model = backend(a.url)
    deltas, done = await collect(model, ask())
    assert (deltas, done.text) == (["The Eiffel Tower"], "The Eiffel Tower")
    await model.aclose()


async def test_text_read_with_the_end_is_not_held_while_the_body_drains(a: Running) -> None:
    rest = _event({"content": " world"}) + _event({}, "stop") + b"data: [DONE]\n\n"
    a.stand_in.enqueue(Raw([_event({"content": "Hello"}), rest], gaps_s=[0.05, 0.6]))  # body ends 0.6 s on
    model = backend(a.url)
    started, arrived = time.monotonic(), []
    async for item in model.stream(ask()):
        arrived.append((item.text if isinstance(item, Delta) else "(done)", time.monotonic() - started))
    assert [text for text, _ in arrived] == ["Hello", " world", "(done)"]
    assert arrived[1][1] < 0.4 < arrived[2][1]  # " world" at once; the completion after the drain
    await model.aclose()


async def test_text_read_with_a_failure_still_goes_out_before_it(a: Running) -> None:
    failure = b'data: {"error": {"message": "engine dead"}}\n\n'
    a.stand_in.enqueue(Raw([_event({"content": "Hello"}) + _event({"content": " world"}) + failure]))
    model = backend(a.url)
    deltas: list[str] = []
    with pytest.raises(BackendError, match="engine dead"):
        async for item in model.stream(ask()):
            if isinstance(item, Delta):
                deltas.append(item.text)
    assert "".join(deltas) == "Hello world"
    await model.aclose()


async def test_a_finished_stream_leaves_its_connection_for_the_next_turn(a: Running) -> None:
    a.stand_in.peers.clear()
    model = backend(a.url)
    for _ in range(3):
        await model.generate(ask())
    assert len(a.stand_in.peers) == 3 and len(set(a.stand_in.peers)) == 1  # one connection, kept alive
    await model.aclose()
