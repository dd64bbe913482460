"""Calling a web provider's JSON API: retries, error translation, metering, no leaked keys.

The errors every web provider raises (all are :class:`~mmsr_serve.errors.SearchError`, so the
agent loop shows them to the model)::

    SearchError
    └── ProviderError            the provider answered with an error we cannot retry (other 4xx)
        ├── ProviderAuthError    the key was refused (401, 403)
        ├── ProviderRateLimited  429; retried, honouring Retry-After up to the backoff cap
        ├── ProviderUnavailable  timeout, connection error, 5xx; retried
        └── ProviderResponseError  an answer we cannot read (not JSON, wrong shape, too large)

Retries (tenacity): exponential backoff with jitter, only for the retryable ones above. Every HTTP
attempt is recorded on the :class:`~mmsr_serve.search.costs.Meter` with its outcome. Messages
are built from the status and the provider's own error text, with every registered secret masked
(:mod:`._secret`); they never include the request URL (SerpAPI takes its key in the query), and
they are raised outside of ``except`` blocks, so no chained aiohttp exception carries the request.

The wire is aiohttp (one session per event loop, :mod:`mmsr_serve._aio`), as for the model
backend and the page fetcher: query parameters are encoded as httpx would (``True`` as ``true``,
``None`` as an empty value, a list as repeated keys), proxies and certificates follow the
environment (``HTTPS_PROXY``, ``SSL_CERT_FILE``), no cookie is kept and no redirect followed.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import aiohttp
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, stop_after_attempt
from tenacity.wait import wait_exponential_jitter

from mmsr_serve import fastjson
from mmsr_serve._aio import LoopSession
from mmsr_serve._tls import client_ssl_context
from mmsr_serve.errors import (
    ProviderAuthError,
    ProviderError,
    ProviderRateLimited,
    ProviderResponseError,
    ProviderUnavailable,
)
from mmsr_serve.search.costs import Meter

__all__ = [
    "ApiClient",
    "ProviderAuthError",
    "ProviderError",
    "ProviderRateLimited",
    "ProviderResponseError",
    "ProviderUnavailable",
    "RetryPolicy",
    "with_retries",
]

T = TypeVar("T")
log = logging.getLogger("mmsr.search")
DEFAULT_MAX_RESPONSE_BYTES = 8 * 1024 * 1024
_DETAIL_CHARS = 200
_CONNECTIONS = 256  # open at once per provider, kept ones included


@dataclass(frozen=True)
class RetryPolicy:
    """``attempts`` in all (1 = no retry); waits grow from ``backoff_s`` up to ``max_backoff_s``."""

    attempts: int = 3
    backoff_s: float = 0.5
    max_backoff_s: float = 8.0


async def with_retries(policy: RetryPolicy, call: Callable[[], Awaitable[T]]) -> T:
    """Run ``call``, retrying the :class:`ProviderError` s that are retryable."""
    backoff = wait_exponential_jitter(
        multiplier=policy.backoff_s, max=policy.max_backoff_s, jitter=policy.backoff_s
    )

    def wait(state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, ProviderRateLimited) and exc.retry_after_s is not None:
            return min(exc.retry_after_s, policy.max_backoff_s)
        return float(backoff(state))

    def before_sleep(state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        log.info("retrying after attempt %d failed: %s", state.attempt_number, exc)

    retrying = AsyncRetrying(
        stop=stop_after_attempt(policy.attempts),
        wait=wait,
        retry=retry_if_exception(lambda e: isinstance(e, ProviderError) and e.retryable),
        before_sleep=before_sleep,
        reraise=True,
    )

    async def run() -> T:
        return await call()

    return await retrying(run)


def error_detail(body: bytes) -> str:
    """The provider's own error text from a JSON (or plain) error body, shortened."""
    try:
        data: Any = json.loads(body)
    except ValueError:
        text = body.decode("utf-8", "replace").strip()
        return text[:_DETAIL_CHARS] if text and not text.startswith("<") else ""
    for _ in range(3):  # {"error": {"detail": ...}}, {"detail": {"error": ...}} ...
        if not isinstance(data, dict):
            break
        inner = next(
            (data[k] for k in ("error", "detail", "message", "readableMessage") if data.get(k)), None
        )
        if inner is None:
            break
        data = inner
    return str(data)[:_DETAIL_CHARS] if isinstance(data, (str, int, float)) else ""


def _query(params: Mapping[str, Any] | None) -> list[tuple[str, str]]:
    """Query parameters as httpx encodes them: booleans lower-case, None empty, sequences repeated."""
    pairs: list[tuple[str, str]] = []
    for name, value in (params or {}).items():
        for item in value if isinstance(value, (list, tuple)) else (value,):
            if item is None:
                pairs.append((name, ""))
            elif isinstance(item, bool):
                pairs.append((name, "true" if item else "false"))
            else:
                pairs.append((name, str(item)))
    return pairs


def _retry_after(headers: Mapping[str, str]) -> float | None:
    value = headers.get("retry-after", "")
    try:
        return max(0.0, float(value)) if value else None
    except ValueError:
        return None  # an HTTP date: use the backoff


class ApiClient:
    """One provider's HTTP API: base URL, timeout, retries, metering. JSON in, JSON out."""

    def __init__(
        self,
        provider: str,
        base_url: str,
        *,
        meter: Meter | None = None,
        timeout_s: float = 15.0,
        retry: RetryPolicy | None = None,
        max_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
        status_hints: Mapping[int, str] | None = None,
    ) -> None:
        self.provider = provider
        self.base_url = base_url.rstrip("/")
        self.meter = meter or Meter()
        self.retry = retry or RetryPolicy()
        self.max_bytes = max_bytes
        self.status_hints = dict(status_hints or {})
        self.timeout_s = timeout_s
        self._session = LoopSession(self._new_session)

    def _new_session(self) -> aiohttp.ClientSession:
        connector = aiohttp.TCPConnector(ssl=client_ssl_context(), limit=_CONNECTIONS, limit_per_host=0)
        # each of connecting (a free connection included) and every read has timeout_s, as httpx's
        # timeout did; the provider's own deadline is the search's (the agent loop's search timeout)
        timeout = aiohttp.ClientTimeout(total=None, connect=self.timeout_s, sock_read=self.timeout_s)
        return aiohttp.ClientSession(
            connector=connector, timeout=timeout, trust_env=True, cookie_jar=aiohttp.DummyCookieJar()
        )

    def __repr__(self) -> str:
        return f"ApiClient({self.provider!r}, {self.base_url!r})"

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json_body: Any = None,
        headers: Mapping[str, str] | None = None,
        tokens_of: Callable[[Any], int] | None = None,
    ) -> Any:
        """The parsed JSON answer of a 2xx response, after retries; raises :class:`ProviderError`."""
        url = self.base_url + path

        async def attempt() -> Any:
            try:
                data = await self._attempt(method, url, params, json_body, headers)
            except ProviderError as exc:
                self.meter.record(self.provider, exc.outcome)
                raise
            self.meter.record(self.provider, "ok", tokens=tokens_of(data) if tokens_of else 0)
            return data

        return await with_retries(self.retry, attempt)

    async def _attempt(
        self,
        method: str,
        url: str,
        params: Mapping[str, Any] | None,
        json_body: Any,
        headers: Mapping[str, str] | None,
    ) -> Any:
        failure: ProviderError | None = None
        status, body = 0, b""
        answer_headers: Mapping[str, str] = {}
        sent = dict(headers or {})
        data = None
        if json_body is not None:
            data = fastjson.dumps(json_body)
            sent.setdefault("Content-Type", "application/json")
        try:
            session = await self._session.get()
            async with session.request(
                method, url, params=_query(params), data=data, headers=sent, allow_redirects=False
            ) as response:
                status, answer_headers = response.status, response.headers
                body = await self._read(response)
        except asyncio.TimeoutError:
            failure = ProviderUnavailable(self.provider, "no answer in time", outcome="timeout")
        except aiohttp.ClientError as exc:
            reason = type(exc).__name__
            failure = ProviderUnavailable(
                self.provider, f"cannot connect ({reason})", outcome="connection_error"
            )
        if failure is not None:
            raise failure
        if not 200 <= status < 300:
            raise self._status_error(status, body, answer_headers)
        try:
            return json.loads(body)
        except ValueError:
            failure = ProviderResponseError(self.provider, f"the answer (HTTP {status}) is not valid JSON")
        raise failure

    async def _read(self, response: aiohttp.ClientResponse) -> bytes:
        chunks, size = [], 0
        async for chunk in response.content.iter_any():
            size += len(chunk)
            if size > self.max_bytes:
                raise ProviderResponseError(
                    self.provider, f"the answer is larger than {self.max_bytes} bytes"
                )
            chunks.append(chunk)
        return b"".join(chunks)

    def _status_error(self, status: int, body: bytes, headers: Mapping[str, str]) -> ProviderError:
        detail = error_detail(body)
        hint = self.status_hints.get(status, "check the API key" if status in (401, 403) else None)
        message = f"HTTP {status}" + (f": {detail}" if detail else "") + (f" ({hint})" if hint else "")
        if status in (401, 403):
            return ProviderAuthError(self.provider, f"access refused, {message}", status=status)
        if status == 429:
            return ProviderRateLimited(
                self.provider, f"rate limited, {message}", retry_after_s=_retry_after(headers)
            )
        if status >= 500:
            return ProviderUnavailable(self.provider, f"server error, {message}", status=status)
        return ProviderError(self.provider, f"request refused, {message}", status=status)

    async def aclose(self) -> None:
        await self._session.aclose()
