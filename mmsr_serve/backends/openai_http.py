"""OpenAIBackend: a model behind any OpenAI-compatible server (``vllm serve``, SGLang), one or many replicas.

Every call streams (``stream=True`` with usage in the last chunk); :meth:`generate` just collects.

Retries (tenacity, exponential backoff with jitter, ``Retry-After`` honoured up to the backoff cap)
happen on connection errors, timeouts, HTTP 429 and 5xx, and only before the first text delta has
been yielded: a broken stream is never replayed, so no text is ever duplicated. Other 4xx answers
are the caller's or the configuration's fault and fail at once with the server's message.

Replicas: each request goes to the replica with the fewest requests in flight from this process
(ties in turn). A replica that refused a connection sits out ``replica_cooldown_s`` seconds (unless
every replica does), and a failed attempt is retried straight away, without backoff, on a healthy
replica this request has not tried yet, if one is left.

Stop strings: vLLM strips the stop string from the text and names it in the non-standard choice
field ``stop_reason`` (SGLang: ``matched_stop``); it is re-appended, as a last delta, unless the text
already ends with it (``extra_body={"include_stop_str_in_output": True}`` keeps it server-side).
``finish_reason`` "length" stays "length"; anything else reads as "stop".

openai's errors are translated here into :class:`BackendError` / :class:`BackendTimeout`.
``api_key`` defaults to a placeholder, never to ``OPENAI_API_KEY``: a local vLLM must not receive a
user's OpenAI key by accident.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import urlsplit, urlunsplit

import openai
from openai import AsyncOpenAI
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, stop_after_attempt
from tenacity.wait import wait_exponential_jitter

from mmsr_serve.backends.base import Completion, Delta, GenerateRequest, Message, ModelBackend, TextPart
from mmsr_serve.errors import BackendError, BackendTimeout
from mmsr_serve.images import to_data_url

log = logging.getLogger(__name__)
ClientFactory = Callable[[str], AsyncOpenAI]


@dataclass(eq=False)
class _Replica:
    url: str
    client: AsyncOpenAI
    in_flight: int = 0
    down_until: float = 0.0

    @property
    def label(self) -> str:
        """The URL without credentials, for logs and error messages."""
        parts = urlsplit(self.url)
        host = parts.hostname or ""
        netloc = f"[{host}]" if ":" in host else host
        netloc += f":{parts.port}" if parts.port else ""
        return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


class OpenAIBackend(ModelBackend):
    """Stream chat completions from ``model`` on one or several OpenAI-compatible servers.

    ``base_urls`` end in ``/v1`` (added when a URL has no path). ``timeout_s`` bounds every wait for
    the server: the response headers, then each streamed chunk. ``client_factory(url)`` builds the
    ``AsyncOpenAI`` client of each replica (tests inject transports this way); it should keep the
    client's own retries off, since retries happen here.
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
        image_format: Literal["PNG", "JPEG"] = "PNG",
        extra_body: Mapping[str, Any] | None = None,
        client_factory: ClientFactory | None = None,
    ) -> None:
        urls = [base_urls] if isinstance(base_urls, str) else list(base_urls)
        if not urls:
            raise ValueError("OpenAIBackend needs at least one base URL")
        self.model = model
        self.timeout_s = timeout_s
        self._max_retries = max_retries
        self._backoff = wait_exponential_jitter(multiplier=backoff_s, max=max_backoff_s, jitter=backoff_s)
        self._max_backoff_s = max_backoff_s
        self._cooldown_s = replica_cooldown_s
        self._image_format = image_format
        self._extra_body = dict(extra_body or {})
        self._probe_timeout = openai.Timeout(min(timeout_s, 10.0), connect=connect_timeout_s)

        def default_factory(url: str) -> AsyncOpenAI:
            timeout = openai.Timeout(timeout_s, connect=connect_timeout_s)
            return AsyncOpenAI(base_url=url, api_key=api_key or "EMPTY", timeout=timeout, max_retries=0)

        factory = client_factory or default_factory
        self._replicas = [_Replica(url, factory(url)) for url in map(_with_api_path, urls)]
        self._cursor = 0

    async def stream(self, request: GenerateRequest) -> AsyncIterator[Delta | Completion]:
        params = await asyncio.to_thread(self._params, request)
        replica, chunks, head = await self._open(params)
        text, finish, stop_reason, usage = "", None, None, None
        try:
            async with contextlib.aclosing(_chain(head, chunks)) as all_chunks:
                async for chunk in all_chunks:
                    usage = chunk.usage or usage
                    choice = chunk.choices[0] if chunk.choices else None
                    if choice is None:
                        continue
                    if choice.delta is not None and choice.delta.content:
                        text += choice.delta.content
                        yield Delta(choice.delta.content)
                    if choice.finish_reason is not None:
                        finish = choice.finish_reason
                        # vLLM's field, then SGLang's; both hold a token id when a stop token ended it.
                        stop_reason = getattr(choice, "stop_reason", None) or getattr(
                            choice, "matched_stop", None
                        )
        except openai.OpenAIError as exc:
            raise _translate(exc, replica.label, self.timeout_s) from exc
        finally:
            replica.in_flight -= 1
            await chunks.close()
        if finish not in ("stop", "length"):
            # A stream that ends without a finish reason was cut (connection closed); "abort" and
            # other values mean the server gave up. Neither is a complete turn.
            raise BackendError(
                f"{replica.label}: the stream ended without finishing (finish_reason={finish})"
            )
        if isinstance(stop_reason, str) and stop_reason and not text.endswith(stop_reason):
            text += stop_reason
            yield Delta(stop_reason)
        yield Completion(
            text,
            finish,
            prompt_tokens=usage.prompt_tokens if usage else None,
            completion_tokens=usage.completion_tokens if usage else None,
            extra={"base_url": replica.label},
        )

    async def _open(self, params: dict[str, Any]) -> tuple[_Replica, Any, list[Any]]:
        """Start the stream on some replica, retrying, and read it up to its first text.

        Returns the replica (its in-flight count taken), the open stream and the chunks read.
        """
        tried: set[_Replica] = set()

        def wait(state: RetryCallState) -> float:
            if any(r not in tried for r in self._healthy()):
                return 0.0  # another replica is up and untried: go there now
            exc = state.outcome.exception() if state.outcome else None
            if isinstance(exc, openai.APIStatusError):
                retry_after = exc.response.headers.get("retry-after", "")
                if retry_after.replace(".", "", 1).isdigit():
                    return min(float(retry_after), self._max_backoff_s)
            return float(self._backoff(state))

        retrying = AsyncRetrying(
            stop=stop_after_attempt(self._max_retries + 1),
            wait=wait,
            retry=retry_if_exception(_retryable),
            reraise=True,
        )
        replica = self._replicas[0]
        try:
            async for attempt in retrying:
                with attempt:
                    replica = self._pick(tried)
                    tried.add(replica)
                    replica.in_flight += 1
                    chunks = None
                    try:
                        chunks = await replica.client.chat.completions.create(**params)
                        head: list[Any] = []
                        async for chunk in chunks:
                            head.append(chunk)
                            if any(c.delta is not None and c.delta.content for c in chunk.choices):
                                break
                        return replica, chunks, head
                    except BaseException as exc:
                        replica.in_flight -= 1
                        if chunks is not None:
                            await chunks.close()
                        if isinstance(exc, openai.OpenAIError):
                            log.info("%s: %s", replica.label, _describe(exc))
                        if type(exc) is openai.APIConnectionError:  # refused or reset, not slow
                            replica.down_until = time.monotonic() + self._cooldown_s
                        raise
        except openai.OpenAIError as exc:
            raise _translate(exc, replica.label, self.timeout_s) from exc
        raise AssertionError("unreachable: tenacity re-raises the last error")

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

    def _params(self, request: GenerateRequest) -> dict[str, Any]:
        params: dict[str, Any] = {
            "model": self.model,
            "messages": [self._wire_message(m) for m in request.messages],
            "max_tokens": request.max_tokens,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        optional = {"temperature": request.temperature, "top_p": request.top_p, "seed": request.seed}
        params.update({key: value for key, value in optional.items() if value is not None})
        if request.stop:
            params["stop"] = list(request.stop)
        if self._extra_body:
            params["extra_body"] = dict(self._extra_body)
        return params

    def _wire_message(self, message: Message) -> dict[str, Any]:
        """Text-only messages as a string (every server takes it); otherwise parts in order."""
        if all(isinstance(part, TextPart) for part in message.content):
            return {"role": message.role, "content": message.text}
        parts: list[dict[str, Any]] = []
        for part in message.content:
            if isinstance(part, TextPart):
                parts.append({"type": "text", "text": part.text})
            else:
                image = part.image if self._image_format == "PNG" else part.image.convert("RGB")
                url = to_data_url(image, self._image_format)
                parts.append({"type": "image_url", "image_url": {"url": url}})
        return {"role": message.role, "content": parts}

    async def check_ready(self) -> None:
        """Ready when at least one replica lists the model under ``GET /models``."""
        problems = [p for p in await asyncio.gather(*map(self._probe, self._replicas)) if p]
        if len(problems) == len(self._replicas):
            raise BackendError("no replica is ready: " + "; ".join(problems))

    async def _probe(self, replica: _Replica) -> str | None:
        try:
            client = replica.client.with_options(timeout=self._probe_timeout)
            served = [m.id async for m in client.models.list()]
        except openai.OpenAIError as exc:
            if isinstance(exc, openai.APIConnectionError):
                replica.down_until = time.monotonic() + self._cooldown_s
            return f"{replica.label}: {_describe(exc)}"
        replica.down_until = 0.0
        if self.model not in served:
            return f"{replica.label} does not serve {self.model!r} (it serves {served})"
        return None

    async def aclose(self) -> None:
        await asyncio.gather(*(r.client.close() for r in self._replicas))


def _with_api_path(url: str) -> str:
    url = url.rstrip("/")
    return url + "/v1" if urlsplit(url).path == "" else url


async def _chain(head: list[Any], rest: AsyncIterator[Any]) -> AsyncGenerator[Any, None]:
    for chunk in head:
        yield chunk
    async for chunk in rest:
        yield chunk


def _retryable(exc: BaseException) -> bool:
    if isinstance(exc, openai.APIConnectionError):  # timeouts included
        return True
    return isinstance(exc, openai.APIStatusError) and (exc.status_code == 429 or exc.status_code >= 500)


def _describe(exc: openai.OpenAIError) -> str:
    """The server's own message where it sent one (vLLM, SGLang and OpenAI shapes), else openai's."""
    if isinstance(exc, openai.APIStatusError):
        body = exc.body
        message = body.get("message") if isinstance(body, dict) else None
        return f"HTTP {exc.status_code}: {message if isinstance(message, str) else exc.message}"
    if isinstance(exc, openai.APIConnectionError) and exc.__cause__ is not None:
        return f"{exc.message} ({exc.__cause__})"
    return str(getattr(exc, "message", exc))


def _translate(exc: openai.OpenAIError, url: str, timeout_s: float) -> BackendError:
    if isinstance(exc, openai.APITimeoutError):
        return BackendTimeout(f"{url}: no answer within {timeout_s:g} s")
    return BackendError(f"{url}: {_describe(exc)}")
