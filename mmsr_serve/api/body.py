"""A bound on request bodies: 413 when ``Content-Length`` or the bytes actually received exceed it,
408 when the client stops sending it.

The body is read here, counted as it arrives (a lying or absent ``Content-Length`` does not get
past), each piece within ``read_timeout_s`` of the last (a ``Content-Length`` larger than what is
sent would otherwise hold the connection for ever), and replayed to the app; later ``receive``
calls (the disconnect notice) pass through.
"""

from __future__ import annotations

import asyncio

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mmsr_serve._timeouts import timeout
from mmsr_serve.api.errors import error_response
from mmsr_serve.errors import PayloadTooLarge


class BodyLimitMiddleware:
    def __init__(self, app: ASGIApp, max_bytes: int, read_timeout_s: float = 30.0) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.read_timeout_s = read_timeout_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        too_large = PayloadTooLarge(f"the request body is larger than {self.max_bytes} bytes")
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_bytes:
            await error_response(too_large)(scope, receive, send)
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            try:
                async with timeout(self.read_timeout_s):
                    message = await receive()
            except asyncio.TimeoutError:
                await _request_timeout(self.read_timeout_s)(scope, receive, send)
                return
            if message["type"] != "http.request":
                return  # the client left before sending its body
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                await error_response(too_large)(scope, receive, send)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        await self.app(scope, replaying(b"".join(chunks), receive), send)


def replaying(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that answers the whole ``body`` first, then passes through (the disconnect)."""
    replayed = False

    async def replay() -> Message:
        nonlocal replayed
        if not replayed:
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


def _request_timeout(seconds: float) -> JSONResponse:
    """408, as HTTP has it for a request not sent in time (and the connection is closed)."""
    message = f"the request body did not arrive: nothing for {seconds:g} s"
    error = {"message": message, "type": "invalid_request_error", "param": None, "code": "request_timeout"}
    return JSONResponse({"error": error}, status_code=408, headers={"Connection": "close"})
