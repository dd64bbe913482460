"""One access line per request, on the ``mmsr.access`` logger: why a request failed, in the log.

The line names the request id (the client's ``X-Request-Id`` when it sent a usable one, else a
new one; echoed in the response's ``x-request-id`` header, as OpenAI's API does), the method,
path and status, the latency to the last byte, the model turns and the searches by kind, and for
a 4xx/5xx (or an error event inside a stream) the error's type and message as the client got
them. ``/v1/...`` requests log at INFO (5xx at WARNING), probes and ``/metrics`` at DEBUG.
``log_format: json`` writes each line as one JSON object instead (for log shippers).

Written by :class:`~mmsr_serve.api.metrics.MetricsMiddleware`, which already watches every
response; the chat route feeds the turns, searches and in-stream errors through
:func:`access_of` (the request's ``scope["state"]``).
"""

from __future__ import annotations

import logging
import re
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Literal

from starlette.types import Scope

from mmsr_serve import fastjson
from mmsr_serve.agent.events import Event, SearchFinished, TurnFinished

__all__ = ["Access", "LogFormat", "access_of", "log_access", "request_id"]

log = logging.getLogger("mmsr.access")
LogFormat = Literal["text", "json"]
_KEY = "mmsr_access"
_CLIENT_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
ERROR_BODY_BYTES = 4096  # an error envelope is read up to this size for its type and message


@dataclass
class Access:
    """What one request did, filled in while it runs."""

    request_id: str
    turns: int = 0
    searches: Counter[str] = field(default_factory=Counter)
    error_type: str | None = None
    error_message: str | None = None

    def observe(self, event: Event) -> None:
        if isinstance(event, TurnFinished):
            self.turns += 1
        elif isinstance(event, SearchFinished):
            self.searches[event.record.kind] += 1

    def error(self, type_: str | None, message: str | None) -> None:
        if self.error_type is None:  # the first error is the cause
            self.error_type, self.error_message = type_, message

    def error_from_body(self, body: bytes) -> None:
        """The type and message of an OpenAI error envelope (anything else: ignored)."""
        try:
            inner = fastjson.loads(body).get("error")
        except (ValueError, AttributeError):
            return
        if isinstance(inner, dict):
            self.error(str(inner.get("type")), str(inner.get("message")))


def request_id(scope: Scope) -> str:
    """The client's ``X-Request-Id`` when it is short and plain, else a new id."""
    for name, value in scope.get("headers") or ():
        if name == b"x-request-id":
            text = value.decode("latin-1")
            if _CLIENT_ID.fullmatch(text):
                return text
            break
    return uuid.uuid4().hex


def access_of(scope: Scope) -> Access | None:
    """The request's :class:`Access` (None outside the middleware: an app without it)."""
    state = scope.get("state")
    found = state.get(_KEY) if isinstance(state, dict) else None
    return found if isinstance(found, Access) else None


def attach(scope: Scope, access: Access) -> None:
    scope.setdefault("state", {})[_KEY] = access


def log_access(access: Access, scope: Scope, status: int, latency_s: float, fmt: LogFormat = "text") -> None:
    path = scope.get("path", "")
    api = path.startswith("/v1/")
    level = (logging.WARNING if status >= 500 else logging.INFO) if api else logging.DEBUG
    if not log.isEnabledFor(level):
        return
    method = scope.get("method", "")
    searches = {kind: access.searches.get(kind, 0) for kind in ("image", "text")}
    if fmt == "json":
        record: dict[str, Any] = {
            "request_id": access.request_id,
            "method": method,
            "path": path,
            "status": status,
            "latency_ms": round(1000 * latency_s, 1),
            "turns": access.turns,
            "searches": searches,
        }
        if access.error_type is not None:
            record["error"] = {"type": access.error_type, "message": access.error_message}
        log.log(level, "%s", fastjson.dumps(record).decode())
        return
    line = (
        f"{access.request_id} {method} {path} {status} {1000 * latency_s:.0f}ms "
        f"turns={access.turns} searches=image:{searches['image']},text:{searches['text']}"
    )
    if access.error_type is not None:
        line += f" error={access.error_type}: {access.error_message}"
    log.log(level, "%s", line)
