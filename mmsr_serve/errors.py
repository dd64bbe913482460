"""The exceptions mmsr raises.

Everything derives from :class:`MMSRError`; third-party exceptions (httpx, openai, PIL, sqlite)
are translated into these at the module that calls the third party, never deeper::

    MMSRError
    ├── InvalidInputError        the caller sent something unusable (maps to HTTP 400)
    │   └── ImageError           an image that cannot be decoded, is too large, or cannot be fetched
    ├── BackendError             the model backend failed (maps to HTTP 502)
    │   └── BackendTimeout       ... by not answering in time (maps to HTTP 504)
    ├── SearchError              a search tool failed; the agent loop turns it into a tool result
    │   ├── CacheMissError       replay-only cache and the call was never recorded
    │   ├── FetchError           a URL refused or not fetched
    │   └── ProviderError        a web search provider failed (other 4xx)
    │       ├── ProviderAuthError      401/403: a missing or wrong key
    │       ├── ProviderRateLimited    429, after the retries
    │       ├── ProviderUnavailable    timeouts, connection errors, 5xx, after the retries
    │       └── ProviderResponseError  an answer that is not JSON, of the wrong shape, or too large
    ├── ConfigError              bad configuration (prompt pack, corpus, limits)
    └── APIError                 an HTTP answer of the server's own (status, type, code)
        ├── Unauthorized         401: a missing or wrong API key
        ├── NotFound             404: unknown model or path
        ├── PayloadTooLarge      413: a body over the limit
        ├── TooManyRequests      429: every request slot is taken
        ├── ClientDisconnected   499: the client left first (logged and counted, never sent)
        ├── Unavailable          503: backend or index not ready
        │   └── ShuttingDown     503: the server stopped before the request finished
        └── RequestTimeout       504: the request passed its deadline

Every class of the tree is defined here. The search errors carry the provider's name and are
raised with every registered secret masked (:func:`mmsr_serve._secret.redact`).
"""

from __future__ import annotations


class MMSRError(Exception):
    """Base class of every error mmsr raises on purpose."""


class InvalidInputError(MMSRError):
    """The caller's input cannot be used. ``param`` names the offending field when known."""

    def __init__(self, message: str, *, param: str | None = None) -> None:
        super().__init__(message)
        self.param = param


class ImageError(InvalidInputError):
    """An image could not be decoded, fetched, or exceeds the configured limits."""


class BackendError(MMSRError):
    """The model backend failed to produce a completion.

    ``status`` is the model server's HTTP status when it answered one; ``retryable`` says whether
    another attempt may succeed (the backend's own retry policy reads it, with ``retry_after``).
    ``public`` is what a client of the server may read: the message without the model server's
    address (which ``str()`` names, for logs and SDK users).
    """

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        retryable: bool = False,
        retry_after: float | None = None,
        public: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.retryable, self.retry_after = status, retryable, retry_after
        self.public = public or message


class BackendTimeout(BackendError):
    """The model backend did not answer within its timeout."""


class SearchError(MMSRError):
    """A search provider failed. The message is shown to the model, so it must not hold secrets."""


class CacheMissError(SearchError):
    """A replay-only cache was asked for a call it never recorded."""


class FetchError(SearchError):
    """A URL could not be fetched: refused, unreachable, too slow, too large, or the wrong type."""

    def __init__(self, message: str, *, url: str | None = None, status: int | None = None) -> None:
        super().__init__(message)
        self.url = url
        self.status = status


class ProviderError(SearchError):
    """A web provider answered with an error we cannot retry; ``outcome`` labels it on the meter."""

    outcome = "client_error"
    retryable = False

    def __init__(self, provider: str, message: str, *, status: int | None = None) -> None:
        from mmsr_serve._secret import redact

        super().__init__(redact(f"{provider}: {message}"))
        self.provider = provider
        self.status = status


class ProviderAuthError(ProviderError):
    outcome = "auth_error"


class ProviderRateLimited(ProviderError):
    outcome = "rate_limited"
    retryable = True

    def __init__(self, provider: str, message: str, *, retry_after_s: float | None = None) -> None:
        super().__init__(provider, message, status=429)
        self.retry_after_s = retry_after_s


class ProviderUnavailable(ProviderError):
    outcome = "server_error"  # or timeout, connection_error
    retryable = True

    def __init__(
        self, provider: str, message: str, *, outcome: str = "server_error", status: int | None = None
    ) -> None:
        super().__init__(provider, message, status=status)
        self.outcome = outcome


class ProviderResponseError(ProviderError):
    outcome = "bad_response"


class ConfigError(MMSRError):
    """Invalid configuration: prompt pack, corpus folder, limits."""


class APIError(MMSRError):
    """An error answer of the HTTP server: its status, OpenAI error ``type`` and ``code``."""

    status = 500
    type = "server_error"
    code: str | None = None

    def __init__(self, message: str, *, param: str | None = None, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.param = param
        self.headers = headers or {}


class Unauthorized(APIError):
    status, type, code = 401, "invalid_request_error", "invalid_api_key"


class NotFound(APIError):
    status, type, code = 404, "invalid_request_error", "model_not_found"


class PayloadTooLarge(APIError):
    status, type, code = 413, "invalid_request_error", "request_too_large"


class TooManyRequests(APIError):
    status, type, code = 429, "rate_limit_error", "rate_limit_exceeded"


class ClientDisconnected(APIError):
    """The client went away before the response was ready (logged and counted as 499)."""

    status, type, code = 499, "client_disconnected", "client_disconnected"


class Unavailable(APIError):
    status, type, code = 503, "service_unavailable", "not_ready"


class ShuttingDown(Unavailable):
    code = "shutting_down"


class RequestTimeout(APIError):
    status, type, code = 504, "timeout_error", "request_timeout"
