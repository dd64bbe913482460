"""HTTP errors in OpenAI's envelope, and the one place exceptions are mapped to them.

``{"error": {"message", "type", "param", "code"}}`` with these statuses::

    400 invalid_request_error   InvalidInputError / ImageError, request validation, unsupported fields
    401 invalid_request_error   Unauthorized (code invalid_api_key)
    404 invalid_request_error   NotFound (code model_not_found), unknown routes
    413 invalid_request_error   PayloadTooLarge (code request_too_large)
    429 rate_limit_error        TooManyRequests, with Retry-After (code rate_limit_exceeded)
    400 invalid_request_error   BackendError of a model server's 400/413/422: the request itself (code
                                context_length_exceeded when the prompt is over the model's context)
    429 rate_limit_error        BackendError of a model server's 429, after the retries
    502 backend_error           BackendError: the model backend failed after its retries (its
                                401/403/404 too: the gateway's configuration, not the request)
    503 service_unavailable     Unavailable: the backend or the index is not ready
    504 timeout_error           BackendTimeout (code backend_timeout), RequestTimeout (request_timeout)

A backend error's message is its ``public`` one: the model server's own message, never its address.
    500 server_error            anything else (a bug: logged, its details not sent)

The API's own exceptions derive from :class:`APIError` (itself an :class:`~mmsr_serve.errors.MMSRError`)
and carry their status; the runtime's exceptions are mapped in :func:`status_of`.
"""

from __future__ import annotations

import logging
import math
import re
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from mmsr_serve.errors import (
    APIError,
    BackendError,
    BackendTimeout,
    ImageError,
    InvalidInputError,
    MMSRError,
)

logger = logging.getLogger("mmsr.api")


def status_of(exc: BaseException) -> tuple[int, str, str | None]:
    """(HTTP status, error type, error code) of an exception."""
    if isinstance(exc, APIError):
        return exc.status, exc.type, exc.code
    if isinstance(exc, InvalidInputError):
        return 400, "invalid_request_error", "invalid_image" if isinstance(exc, ImageError) else None
    if isinstance(exc, BackendTimeout):
        return 504, "timeout_error", "backend_timeout"
    if isinstance(exc, BackendError):
        if exc.status in (400, 413, 422):
            context = _CONTEXT_LENGTH.search(exc.public) is not None
            return 400, "invalid_request_error", "context_length_exceeded" if context else None
        if exc.status == 429:
            return 429, "rate_limit_error", "rate_limit_exceeded"
        return 502, "backend_error", "backend_error"
    return 500, "server_error", None


# vLLM: "This model's maximum context length is 8192 tokens. However, you requested ..."; SGLang:
# "The input (...) is longer than the model's context length (...)"; TGI: "... must be <= ...".
_CONTEXT_LENGTH = re.compile(r"context length|context window|maximum context|too many tokens", re.I)


def error_body(exc: BaseException) -> dict[str, Any]:
    """The envelope for ``exc``; the message of an unexpected exception is not disclosed."""
    status, type_, code = status_of(exc)
    message = str(exc) if status != 500 else "internal server error"
    if isinstance(exc, BackendError):
        message = exc.public
    return {"error": {"message": message, "type": type_, "param": getattr(exc, "param", None), "code": code}}


def error_response(exc: BaseException) -> JSONResponse:
    status, _, _ = status_of(exc)
    headers = exc.headers if isinstance(exc, APIError) else None
    if isinstance(exc, BackendError) and status == 429:
        headers = {"Retry-After": str(math.ceil(exc.retry_after or 1))}
    return JSONResponse(error_body(exc), status_code=status, headers=headers)


def _union_tag(part: Any) -> bool:
    """A union member's name in a pydantic error location (``str``, ``list[ContentPart]``, ...)."""
    if not isinstance(part, str):
        return False
    return part in ("str", "int", "float", "bool", "none") or "[" in part or part.startswith("function-")


def _param(loc: tuple[Any, ...]) -> str | None:
    parts = [str(p) for p in loc if p not in ("body",) and not _union_tag(p)]
    out = ""
    for p in parts:
        out += f"[{p}]" if p.isdigit() else (f".{p}" if out else p)
    return out or None


async def _on_validation(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = exc.errors() or [{"loc": (), "msg": "invalid request", "type": ""}]
    # A union (a string or a list of parts) fails once per member: the deepest location is the
    # one that says where the input went wrong (the first such, as pydantic ordered them).
    first = max(errors, key=lambda e: len([p for p in e.get("loc", ()) if not _union_tag(p)]))
    param = _param(tuple(first.get("loc", ())))
    if first.get("type") == "extra_forbidden":
        message = f"unrecognized request argument: {param}"
    elif first.get("type") == "json_invalid":
        message, param = "the request body is not valid JSON", None
    else:
        message = f"{param}: {first.get('msg')}" if param else str(first.get("msg"))
    return error_response(InvalidInputError(message, param=param))


ENDPOINTS = (
    "POST /v1/chat/completions",
    "POST /v1/responses",
    "GET /v1/models",
    "GET /health",
    "GET /ready",
    "GET /metrics",
)


async def _on_http(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    type_ = "invalid_request_error" if exc.status_code < 500 else "server_error"
    code = "not_found" if exc.status_code == 404 else None
    message = str(exc.detail)
    if exc.status_code == 404 and message == "Not Found":  # no such route (not a 404 of ours)
        message = (
            f"no endpoint {request.method} {request.url.path} on this server; "
            f"it serves {', '.join(ENDPOINTS)}"
        )
    body = {"error": {"message": message, "type": type_, "param": None, "code": code}}
    return JSONResponse(body, status_code=exc.status_code, headers=getattr(exc, "headers", None))


def _count(request: Request, exc: BaseException) -> None:
    metrics = getattr(request.app.state, "metrics", None)
    if metrics is not None:
        metrics.count_error(exc)


async def on_mmsr_error(request: Request, exc: Exception) -> JSONResponse:
    """The answer to an :class:`~mmsr_serve.errors.MMSRError` raised by an endpoint (counted, and
    logged when it is the server's fault)."""
    _count(request, exc)
    if status_of(exc)[0] >= 500:
        logger.warning("%s: %s", type(exc).__name__, exc)
    return error_response(exc)


async def _on_unexpected(request: Request, exc: Exception) -> JSONResponse:
    _count(request, exc)
    logger.exception("unexpected error on %s", request.url.path, exc_info=exc)
    return error_response(exc)


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(RequestValidationError, _on_validation)
    app.add_exception_handler(StarletteHTTPException, _on_http)
    app.add_exception_handler(MMSRError, on_mmsr_error)
    app.add_exception_handler(Exception, _on_unexpected)
