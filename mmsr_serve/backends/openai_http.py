"""OpenAIBackend: a model behind any OpenAI-compatible server (``vllm serve``, SGLang), one or many replicas.

Every call streams (``stream=True`` with usage in the last chunk); :meth:`generate` just collects.
The wire is aiohttp (its C HTTP parser) with orjson, as vLLM's benchmark client and SGLang's
own do: the request body is built once per turn without a generic SDK's per-part transforms, and
the server-sent events are split and parsed as bytes (a streamed call costs a tenth of the client
CPU it cost on httpx: benchmarks/results/gateway_cpu.md). Each image part is encoded once per run
(:class:`ImagePart.wire`), as its own bytes where they are exactly its pixels
(``image_format="auto"``), else as JPEG.

Retries (tenacity, exponential backoff with jitter, ``Retry-After`` honoured up to the backoff cap)
happen on connection errors, timeouts, HTTP 429 and 5xx, a malformed stream and an error event,
and only before the first text delta has been yielded: a broken stream is never replayed, so no
text is ever duplicated. Other 4xx answers are the caller's or the configuration's fault and fail
at once with the server's message.

Replicas: each request goes to the replica with the fewest requests in flight from this process
(ties in turn). A replica that refused a connection sits out ``replica_cooldown_s`` seconds (unless
every replica does), and a failed attempt is retried straight away, without backoff, on a healthy
replica this request has not tried yet, if one is left.

Stop strings: vLLM strips the stop string from the text and names it in the non-standard choice
field ``stop_reason`` (SGLang: ``matched_stop``); it is re-appended, as a last delta, unless the text
already ends with it (``extra_body={"include_stop_str_in_output": True}`` keeps it server-side).
``finish_reason`` "length" stays "length"; anything else reads as "stop".

Every failure reaches the caller as :class:`BackendError` / :class:`BackendTimeout`, naming the
replica without its credentials. ``api_key`` defaults to a placeholder, never to
``OPENAI_API_KEY``: a local vLLM must not receive a user's OpenAI key by accident.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import unquote, urlsplit, urlunsplit
from urllib.request import getproxies, proxy_bypass

import aiohttp
import anyio
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, stop_after_attempt
from tenacity.wait import wait_exponential_jitter

from mmsr_serve import fastjson
from mmsr_serve._secret import Secret, redact, without_credentials
from mmsr_serve.backends.base import (
    Completion,
    Delta,
    GenerateRequest,
    ImagePart,
    Message,
    ModelBackend,
    TextPart,
)
from mmsr_serve.errors import BackendError, BackendTimeout
from mmsr_serve.images import EncodedImage, encode_image, to_data_url

log = logging.getLogger(__name__)
ImageFormat = Literal["auto", "PNG", "JPEG"]
# Quality 95 with full chroma: above 42 dB PSNR on photos, drawings and logos alike, and 40 times
# faster than PNG at 512x600 (1.7 ms against 69 ms; tests/backends/test_openai_http.py states the bound).
JPEG_QUALITY = 95
# As openai-python's client: enough connections for a server's whole concurrency.
MAX_CONNECTIONS = 1000
_ERROR_BODY_BYTES = 64 * 1024
_DRAIN_S = 1.0


@dataclass(eq=False)
class _Replica:
    url: str  # ends in "/"; credentials, if the URL had any, are in ``headers`` instead
    headers: dict[str, str]
    proxy: str | None = None
    proxy_headers: dict[str, str] | None = None
    in_flight: int = 0
    down_until: float = 0.0

    label: str = field(init=False)
    """The URL without credentials, for logs and error messages."""

    def __post_init__(self) -> None:
        self.label = without_credentials(self.url)


class OpenAIBackend(ModelBackend):
    """Stream chat completions from ``model`` on one or several OpenAI-compatible servers.

    ``base_urls`` end in ``/v1`` (added when a URL has no path). ``timeout_s`` bounds every wait for
    the server: the response headers, then each streamed chunk. ``image_format``: ``auto`` sends an
    image's own bytes when they are exactly its pixels (a PNG, JPEG or WebP that was not resized)
    and JPEG (quality 95, full chroma) otherwise; ``PNG`` is lossless always; ``JPEG`` always re-encodes.
    Proxies from the environment (``HTTP_PROXY``, ``NO_PROXY``) are honoured, as httpx and
    openai-python do, read once here (aiohttp's ``trust_env`` would read them, and ``~/.netrc``,
    on a worker thread at every request); credentials in a base URL are sent as basic auth
    instead of the API key.
    """

    def __init__(
        self,
        base_urls: str | Sequence[str],
        model: str,
        *,
        api_key: str | None = None,
        timeout_s: float = 300.0,
        connect_timeout_s: float = 5.0,
        max_retries: int = 3,
        backoff_s: float = 0.5,
        max_backoff_s: float = 8.0,
        replica_cooldown_s: float = 10.0,
        image_format: ImageFormat = "auto",
        extra_body: Mapping[str, Any] | None = None,
    ) -> None:
        urls = [base_urls] if isinstance(base_urls, str) else list(base_urls)
        if not urls:
            raise ValueError("OpenAIBackend needs at least one base URL")
        if image_format not in ("auto", "PNG", "JPEG"):
            raise ValueError(f"image_format must be auto, PNG or JPEG, not {image_format!r}")
        self.model = model
        self.timeout_s = timeout_s
        self._max_retries = max_retries
        self._backoff = wait_exponential_jitter(multiplier=backoff_s, max=max_backoff_s, jitter=backoff_s)
        self._max_backoff_s = max_backoff_s
        self._cooldown_s = replica_cooldown_s
        self._image_format = image_format
        self._extra_body = dict(extra_body or {})
        # Each read waits at most timeout_s (the headers, then every chunk); a free pooled
        # connection is waited for as long, a new one connects within connect_timeout_s.
        self._timeout = aiohttp.ClientTimeout(
            total=None, connect=timeout_s, sock_connect=connect_timeout_s, sock_read=timeout_s
        )
        self._probe_s = min(timeout_s, 10.0)
        self._probe_timeout = aiohttp.ClientTimeout(total=self._probe_s, sock_connect=connect_timeout_s)
        key = Secret(api_key).reveal() if api_key else "EMPTY"  # a real key is masked in messages
        self._replicas = [_replica(url, key) for url in map(_with_api_path, urls)]
        self._cursor = 0
        self._session: aiohttp.ClientSession | None = None
        self._session_loop: asyncio.AbstractEventLoop | None = None

    def _client(self) -> aiohttp.ClientSession:
        """The connection pool, made on first use in the running event loop (aiohttp binds a
        session to its loop; a backend reused under a later ``asyncio.run`` gets a fresh one)."""
        loop = asyncio.get_running_loop()
        if self._session is None or self._session.closed or self._session_loop is not loop:
            connector = aiohttp.TCPConnector(limit=MAX_CONNECTIONS, limit_per_host=0)
            self._session = aiohttp.ClientSession(
                connector=connector, timeout=self._timeout, auto_decompress=True
            )
            self._session_loop = loop
        return self._session

    async def stream(self, request: GenerateRequest) -> AsyncIterator[Delta | Completion]:
        await self._encode_images(request.messages)
        body = self._body(request)
        replica, response, events, first = await self._open(body)
        pieces: list[str] = []
        held = 0  # pieces not yet yielded: chunks that arrived together leave as one delta
        finish, stop_reason, usage = None, None, None
        try:
            item = first
            while item is not None:
                chunk, more = item
                usage = chunk.get("usage") or usage
                choices = chunk.get("choices")
                if choices:
                    choice = choices[0]
                    content = (choice.get("delta") or {}).get("content")
                    if content:
                        pieces.append(content)
                        held += 1
                    if choice.get("finish_reason") is not None:
                        finish = choice["finish_reason"]
                        # vLLM's field, then SGLang's; both hold a token id when a stop token ended it.
                        stop_reason = choice.get("stop_reason") or choice.get("matched_stop")
                if held and not more:
                    yield Delta("".join(pieces[-held:]))
                    held = 0
                try:
                    item = await _next_chunk(events, replica.label, self.timeout_s)
                except BackendError:  # a failure after text in the same read: that text still goes out
                    if held:
                        yield Delta("".join(pieces[-held:]))
                    raise
            if held:
                yield Delta("".join(pieces[-held:]))
        finally:
            replica.in_flight -= 1
            await _close(events, response)
        text = "".join(pieces)
        if finish not in ("stop", "length"):
            # A stream that ends without a finish reason was cut (connection closed); "abort" and
            # other values mean the server gave up. Neither is a complete turn.
            raise BackendError(
                f"{replica.label}: the stream ended without finishing (finish_reason={finish})",
                public="the model server's stream ended without finishing",
            )
        if isinstance(stop_reason, str) and stop_reason and not text.endswith(stop_reason):
            text += stop_reason
            yield Delta(stop_reason)
        yield Completion(
            text,
            finish,
            prompt_tokens=usage.get("prompt_tokens") if usage else None,
            completion_tokens=usage.get("completion_tokens") if usage else None,
            extra={"base_url": replica.label},
        )

    async def _open(
        self, body: bytes
    ) -> tuple[_Replica, aiohttp.ClientResponse, AsyncGenerator[_Event, None], _Event | None]:
        """Start the stream on some replica, retrying, and read it up to its first text.

        Returns the replica (its in-flight count taken), the open response, its event iterator and
        the first event with text (or the last one when none has text, None at the end).
        """
        tried: set[_Replica] = set()

        def wait(state: RetryCallState) -> float:
            if any(r not in tried for r in self._healthy()):
                return 0.0  # another replica is up and untried: go there now
            exc = state.outcome.exception() if state.outcome else None
            if isinstance(exc, BackendError) and exc.retry_after is not None:
                return min(exc.retry_after, self._max_backoff_s)
            return float(self._backoff(state))

        retrying = AsyncRetrying(
            stop=stop_after_attempt(self._max_retries + 1),
            wait=wait,
            retry=retry_if_exception(lambda exc: isinstance(exc, BackendError) and exc.retryable),
            reraise=True,
        )
        async for attempt in retrying:
            with attempt:
                replica = self._pick(tried)
                tried.add(replica)
                return await self._attempt(replica, body)
        raise AssertionError("unreachable: tenacity re-raises the last error")

    async def _attempt(
        self, replica: _Replica, body: bytes
    ) -> tuple[_Replica, aiohttp.ClientResponse, AsyncGenerator[_Event, None], _Event | None]:
        replica.in_flight += 1
        response: aiohttp.ClientResponse | None = None
        events: AsyncGenerator[_Event, None] | None = None
        try:
            try:
                url = replica.url + "chat/completions"
                response = await self._client().post(
                    url,
                    data=body,
                    headers=replica.headers,
                    proxy=replica.proxy,
                    proxy_headers=replica.proxy_headers,
                )
            except TimeoutError as exc:
                raise _timeout(replica.label, self.timeout_s) from exc
            except aiohttp.ClientError as exc:  # refused or reset, not slow: the replica sits out
                replica.down_until = time.monotonic() + self._cooldown_s
                message = f"{replica.label}: connection failed ({_reason(exc)})"
                public = "could not connect to the model server"
                raise BackendError(message, retryable=True, public=public) from exc
            if response.status >= 400:
                raise await _status_failure(response, replica.label)
            events = _chunks(response, replica.label)
            item = await _next_chunk(events, replica.label, self.timeout_s)
            while item is not None and not _has_text(chunk := item[0]):
                if not chunk.get("choices") and chunk.get("usage"):
                    break  # the usage chunk: nothing follows but the end
                if any(c.get("finish_reason") is not None for c in chunk.get("choices") or ()):
                    break  # finished without text
                item = await _next_chunk(events, replica.label, self.timeout_s)
            return replica, response, events, item
        except BaseException as exc:
            replica.in_flight -= 1
            await _close(events, response)
            if isinstance(exc, BackendError):
                log.info("%s", exc)
            raise

    def _healthy(self) -> list[_Replica]:
        now = time.monotonic()
        return [r for r in self._replicas if r.down_until <= now]

    def _pick(self, tried: set[_Replica]) -> _Replica:
        """Fewest in flight among the healthy replicas not yet tried for this request; ties in turn.

        Once every healthy replica was tried, any healthy one; when none is healthy, any.
        """
        healthy = self._healthy()
        pool = [r for r in healthy if r not in tried] or healthy or self._replicas
        least = min(r.in_flight for r in pool)
        count = len(self._replicas)
        for step in range(count):
            index = (self._cursor + step) % count
            replica = self._replicas[index]
            if replica in pool and replica.in_flight == least:
                self._cursor = index + 1
                return replica
        raise AssertionError("unreachable: the pool holds a replica with the least in flight")

    def _body(self, request: GenerateRequest) -> bytes:
        """The JSON body openai-python would send for the same call (``extra_body`` merged in)."""
        params: dict[str, Any] = {
            "messages": [self._wire_message(m) for m in request.messages],
            "model": self.model,
            "max_tokens": request.max_tokens,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        if request.stop:
            params["stop"] = list(request.stop)
        # the sampling knobs a request sets; top_k, min_p, repetition_penalty: vLLM's and SGLang's
        for name in ("seed", "temperature", "top_p", "top_k", "min_p", "repetition_penalty"):
            if (value := getattr(request, name)) is not None:
                params[name] = value
        params.update(self._extra_body)
        try:
            return fastjson.dumps(params)
        except TypeError as exc:  # a lone surrogate, say: nothing a model server could read
            raise BackendError(f"the request cannot be sent as JSON: {exc}") from exc

    def _wire_message(self, message: Message) -> dict[str, Any]:
        """Text-only messages as a string (every server takes it); otherwise parts in order."""
        if all(isinstance(part, TextPart) for part in message.content):
            return {"role": message.role, "content": message.text}
        parts: list[dict[str, Any]] = []
        for part in message.content:
            if isinstance(part, TextPart):
                parts.append({"type": "text", "text": part.text})
            else:
                url = part.wire.get(self._image_format) or self._encode(part)
                parts.append({"type": "image_url", "image_url": {"url": url}})
        return {"role": message.role, "content": parts}

    async def _encode_images(self, messages: Iterable[Message]) -> None:
        """Encode, off the event loop, the image parts this backend has not sent yet."""
        fresh = [
            part
            for message in messages
            for part in message.content
            if isinstance(part, ImagePart) and self._image_format not in part.wire
        ]
        if not fresh:
            return
        if all(self._image_format == "auto" and part.encoded is not None for part in fresh):
            for part in fresh:  # their own bytes as a data URL: a copy, cheaper than a thread hop
                self._encode(part)
            return
        await asyncio.to_thread(lambda: [self._encode(part) for part in fresh])

    def _encode(self, part: ImagePart) -> str:
        if self._image_format == "auto" and part.encoded is not None:
            url = part.encoded.data_url()
        elif self._image_format == "PNG":
            url = to_data_url(part.image, "PNG")
        else:
            jpeg = encode_image(part.image.convert("RGB"), "JPEG", quality=JPEG_QUALITY, subsampling=0)
            url = EncodedImage(jpeg, "JPEG").data_url()
        part.wire[self._image_format] = url
        return url

    async def check_ready(self) -> None:
        """Ready when at least one replica lists the model under ``GET /models``."""
        problems = [p for p in await asyncio.gather(*map(self._probe, self._replicas)) if p]
        if len(problems) == len(self._replicas):
            public = f"none of the {len(problems)} model server replicas is ready"
            raise BackendError("no replica is ready: " + "; ".join(problems), public=public)

    async def _probe(self, replica: _Replica) -> str | None:
        try:
            get = self._client().get
            url, timeout = replica.url + "models", self._probe_timeout
            proxy, proxy_headers = replica.proxy, replica.proxy_headers
            async with get(
                url, headers=replica.headers, timeout=timeout, proxy=proxy, proxy_headers=proxy_headers
            ) as response:
                if response.status >= 400:
                    raise await _status_failure(response, replica.label)
                served = [m["id"] for m in fastjson.loads(await response.read())["data"]]
        except TimeoutError:
            return f"{replica.label}: no answer within {self._probe_s:g} s"
        except aiohttp.ClientError as exc:
            replica.down_until = time.monotonic() + self._cooldown_s
            return f"{replica.label}: connection failed ({_reason(exc)})"
        except BackendError as exc:
            return str(exc)
        except (ValueError, KeyError, TypeError) as exc:
            return f"{replica.label}: GET /models did not answer a model list ({exc!r})"
        replica.down_until = 0.0
        if self.model not in served:
            return f"{replica.label} does not serve {self.model!r} (it serves {served})"
        return None

    async def aclose(self) -> None:
        if self._session is not None and self._session_loop is asyncio.get_running_loop():
            await self._session.close()
        self._session = None


def _with_api_path(url: str) -> str:
    url = url.rstrip("/")
    url = url + "/v1" if urlsplit(url).path == "" else url
    return url + "/"  # paths are joined under it


def _replica(url: str, key: str) -> _Replica:
    """A replica; credentials in its URL go as basic auth, in place of the API key."""
    parts = urlsplit(url)
    auth = f"Bearer {key}"
    if parts.username is not None:
        auth = aiohttp.encode_basic_auth(unquote(parts.username), unquote(parts.password or ""))
        netloc = parts.netloc.rpartition("@")[2]
        url = urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
    headers = {"Authorization": auth, "Content-Type": "application/json"}
    proxy, proxy_auth = _env_proxy(url)
    proxy_headers = None
    if proxy_auth is not None:  # a plain-HTTP call carries it itself; a TLS one, in its CONNECT
        if parts.scheme == "http":
            headers["Proxy-Authorization"] = proxy_auth
        else:
            proxy_headers = {"Proxy-Authorization": proxy_auth}
    return _Replica(url, headers, proxy, proxy_headers)


def _env_proxy(url: str) -> tuple[str | None, str | None]:
    """The environment's proxy for ``url`` (``*_PROXY``, ``NO_PROXY``) and its ``Proxy-Authorization``.

    aiohttp speaks to HTTP proxies only (an ``https://`` proxy URL is skipped, as aiohttp's own
    ``trust_env`` skips it)."""
    parts = urlsplit(url)
    proxy = getproxies().get(parts.scheme)
    if not proxy or (parts.hostname and proxy_bypass(parts.hostname)):
        return None, None
    p = urlsplit(proxy)
    if p.scheme != "http":
        log.warning(
            "the %s proxy %s is not supported: connecting directly", p.scheme, without_credentials(proxy)
        )
        return None, None
    auth = None
    if p.username is not None:
        auth = aiohttp.encode_basic_auth(unquote(p.username), unquote(p.password or ""))
    return urlunsplit((p.scheme, p.netloc.rpartition("@")[2], p.path, "", "")), auth


async def _close(events: AsyncGenerator[Any, None] | None, response: aiohttp.ClientResponse | None) -> None:
    """Close the stream; its connection goes back to the pool when it was read to the end, else it
    is closed, also when the request is being cancelled (a client that left): the model server
    must see the connection go, or it generates on for nobody. Starlette cancels through anyio
    cancel scopes, which cancel every await again: shield."""
    with anyio.CancelScope(shield=True):
        if events is not None:
            await events.aclose()
    if response is not None:
        _release(response)


def _release(response: aiohttp.ClientResponse) -> None:
    """Back to the pool when read to the end; else the connection is closed."""
    if response.content.at_eof():
        response.release()
    else:
        response.close()


def _has_text(chunk: dict[str, Any]) -> bool:
    return any((c.get("delta") or {}).get("content") for c in chunk.get("choices") or ())


_Event = tuple[dict[str, Any], bool]
"""A chunk, and whether the next event had already arrived with it."""


async def _chunks(response: aiohttp.ClientResponse, label: str) -> AsyncGenerator[_Event, None]:
    """The stream's chunks: each server-sent event's data parsed as JSON, up to ``[DONE]``; each
    says whether another event came in the same read (the caller joins such chunks' text).

    Events are split on blank lines, as the SSE format says; comments and other fields are
    skipped. An event that is not a JSON object, or an error event (vLLM's and OpenAI's shapes),
    is a failure worth retrying while no text was sent.
    """
    pending, data = b"", list[bytes]()
    body = response.content.iter_any()
    async for received in body:
        lines = (pending + received).split(b"\n")
        pending = lines.pop()
        complete: list[bytes] = []
        for line in lines:
            line = line.rstrip(b"\r")
            if line.startswith(b"data:"):
                data.append(_field_value(line))
            elif not line and data:
                complete.append(b"\n".join(data))
                data = []
        # "more" means more text may follow now: [DONE] does not count (its drain may take a while)
        last = len(complete) - 1 - (complete[-1:] == [b"[DONE]"])
        for index, payload in enumerate(complete):
            if payload == b"[DONE]":
                # Read the body's end (the chunked encoding's last bytes follow at once): a
                # response released unread closes its connection, and the next turn would
                # pay a new one. A server that streams on after [DONE] is cut off.
                with anyio.move_on_after(_DRAIN_S):
                    async for _ in body:
                        pass
                return
            yield _parse(payload, label), index < last
    if pending.startswith(b"data:"):
        data.append(_field_value(pending))
    if data and (payload := b"\n".join(data)) != b"[DONE]":
        yield _parse(payload, label), False


def _field_value(line: bytes) -> bytes:
    """What follows ``data:`` on an SSE line, without the one space the format allows there."""
    return line[6:] if line[5:6] == b" " else line[5:]


def _parse(payload: bytes, label: str) -> dict[str, Any]:
    try:
        chunk = fastjson.loads(payload)
        if not isinstance(chunk, dict):
            raise ValueError(f"an event is {type(chunk).__name__}")
    except ValueError as exc:
        public = "the model server sent a malformed stream"
        raise BackendError(f"{label}: malformed stream ({exc})", retryable=True, public=public) from exc
    error = chunk.get("error")
    if error or chunk.get("object") == "error":
        message = redact(_message_of(chunk) or "no message")
        public = f"the model server failed mid-stream: {message}"
        raise BackendError(f"{label}: the server failed mid-stream: {message}", retryable=True, public=public)
    return chunk


async def _next_chunk(events: AsyncGenerator[_Event, None], label: str, timeout_s: float) -> _Event | None:
    """The next event, None at the end; transport failures as :class:`BackendError`."""
    try:
        return await anext(events, None)
    except TimeoutError as exc:
        raise _timeout(label, timeout_s) from exc
    except aiohttp.ClientError as exc:
        message = f"{label}: the stream broke ({_reason(exc)})"
        public = "the connection to the model server broke"
        raise BackendError(message, retryable=True, public=public) from exc


async def _status_failure(response: aiohttp.ClientResponse, label: str) -> BackendError:
    """An HTTP error answer as a failure carrying the server's own message."""
    raw = b""
    try:
        while len(raw) < _ERROR_BODY_BYTES and (piece := await response.content.read(_ERROR_BODY_BYTES)):
            raw += piece
    except (aiohttp.ClientError, TimeoutError):
        pass
    _release(response)
    try:
        message = _message_of(fastjson.loads(raw))
    except ValueError:
        message = None
    message = redact(message or raw[:500].decode("utf-8", "replace").strip() or response.reason or "")
    status = response.status
    retry_after = response.headers.get("retry-after", "")
    return BackendError(
        f"{label}: HTTP {status}: {message}",
        status=status,
        retryable=status == 429 or status >= 500,
        retry_after=float(retry_after) if retry_after.replace(".", "", 1).isdigit() else None,
        public=f"the model server answered HTTP {status}: {message}",
    )


def _message_of(body: Any) -> str | None:
    """The message of an error body: OpenAI's and vLLM's ``{"error": {"message"}}``, vLLM's older
    top-level ``message``, FastAPI's ``detail``."""
    if not isinstance(body, dict):
        return None
    inner = body.get("error")
    for where in (inner, body):
        if isinstance(where, dict):
            for key in ("message", "detail"):
                if isinstance(where.get(key), str):
                    return str(where[key])
    return inner if isinstance(inner, str) else None


def _timeout(label: str, timeout_s: float) -> BackendTimeout:
    public = f"the model server did not answer within {timeout_s:g} s"
    return BackendTimeout(f"{label}: no answer within {timeout_s:g} s", retryable=True, public=public)


def _reason(exc: aiohttp.ClientError) -> str:
    return str(exc) or type(exc).__name__
