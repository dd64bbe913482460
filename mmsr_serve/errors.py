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
    │   ├── FetchError           a URL refused or not fetched (defined in mmsr_serve.search.fetch)
    │   └── ProviderError        a web search provider failed (these live in mmsr_serve.search._http)
    │       ├── ProviderAuthError      401/403: a missing or wrong key
    │       ├── ProviderRateLimited    429, after the retries
    │       ├── ProviderUnavailable    timeouts, connection errors, 5xx, after the retries
    │       └── ProviderResponseError  an answer that is not JSON, of the wrong shape, or too large
    └── ConfigError              bad configuration (prompt pack, corpus, limits)
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
    """The model backend failed to produce a completion."""


class BackendTimeout(BackendError):
    """The model backend did not answer within its timeout."""


class SearchError(MMSRError):
    """A search provider failed. The message is shown to the model, so it must not hold secrets."""


class CacheMissError(SearchError):
    """A replay-only cache was asked for a call it never recorded."""


class ConfigError(MMSRError):
    """Invalid configuration: prompt pack, corpus folder, limits."""
