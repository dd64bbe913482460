"""API keys that never show: not in reprs, error messages, tracebacks or logs.

A :class:`Secret` holds a key; ``repr`` and ``str`` print ``'***'`` and only :meth:`Secret.reveal`
gives the value, at the one place a request is built. Every secret is also registered for
:func:`redact`, which the providers apply to any text that leaves them (error messages, log
lines), and which a logging filter applies to the records of the HTTP libraries we call through:
httpx logs each request's URL at INFO, and some APIs (SerpAPI) take their key in the query string.
"""

from __future__ import annotations

import logging
import threading
from urllib.parse import urlsplit, urlunsplit

__all__ = ["Secret", "redact", "without_credentials"]

MASK = "***"
_MIN_SECRET_CHARS = 4  # shorter values would redact ordinary words
_registered: set[str] = set()
_lock = threading.Lock()
_FILTERED_LOGGERS = ("httpx", "httpcore", "aiohttp", "openai", "tenacity", "ddgs", "primp")


class Secret:
    """A key that prints as ``'***'``. Falsy when empty."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value
        if len(value) >= _MIN_SECRET_CHARS:
            with _lock:
                _registered.add(value)

    def reveal(self) -> str:
        return self._value

    def __bool__(self) -> bool:
        return bool(self._value)

    def __repr__(self) -> str:
        return f"Secret({MASK!r})"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


def redact(text: str) -> str:
    """``text`` with every registered secret replaced by ``***``."""
    with _lock:
        secrets = sorted(_registered, key=len, reverse=True)
    for secret in secrets:
        if secret in text:
            text = text.replace(secret, MASK)
    return text


class RedactingFilter(logging.Filter):
    """Rewrites a record's message with the secrets masked (the record is kept)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not _registered:
            return True
        try:
            message = record.getMessage()
        except (TypeError, ValueError):  # a malformed record: leave it to the handler to report
            return True
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, ()
        return True


_FILTER = RedactingFilter()
for _name in _FILTERED_LOGGERS:
    logging.getLogger(_name).addFilter(_FILTER)


def without_credentials(url: str) -> str:
    """``url`` as logs and messages may show it: no user or password, no query, no fragment,
    no trailing slash."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    netloc = f"[{host}]" if ":" in host else host
    netloc += f":{parts.port}" if parts.port else ""
    return urlunsplit((parts.scheme, netloc, parts.path.rstrip("/"), "", ""))
