"""``POST /v1/chat/completions`` without FastAPI's routing: the hot route, straight to the pipeline.

FastAPI's route matching, request and dependency machinery, and the JSON-then-validate of the
body took about a tenth of a plain call's CPU. This ASGI layer, innermost under the server's own
middleware (metrics, auth, body limit, so they see every request as before), validates the body
in one pass (``model_validate_json``) and runs :func:`~mmsr_serve.api.pipeline.run_request`
itself. Whatever it does not take as it is goes on to the FastAPI route unchanged, which answers
exactly as it always did: another method, a body that is not ``application/json``, a body that
does not validate (its 400 and message are FastAPI's path's). The route stays registered there
for the OpenAPI schema too. An :class:`~mmsr_serve.errors.MMSRError` is answered by the same
handler as on the route; anything else propagates to the same place (Starlette's 500).
"""

from __future__ import annotations

from pydantic import ValidationError
from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from mmsr_serve.api.body import replaying
from mmsr_serve.api.errors import on_mmsr_error
from mmsr_serve.api.pipeline import run_request
from mmsr_serve.api.routes import ChatRenderer
from mmsr_serve.api.schemas import ChatCompletionRequest
from mmsr_serve.errors import MMSRError

PATH = "/v1/chat/completions"


class FastChatRoute:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != PATH or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client left before its body arrived
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        raw = b"".join(chunks)
        body = _validated(scope, raw)
        if body is None:
            await self.app(scope, replaying(raw, receive), send)
            return
        request = Request(scope, receive)
        try:
            response = await run_request(request, body, ChatRenderer())
        except MMSRError as exc:
            response = await on_mmsr_error(request, exc)
        await response(scope, receive, send)


def _validated(scope: Scope, raw: bytes) -> ChatCompletionRequest | None:
    """The request body, when it is JSON and valid; None sends it to the FastAPI route."""
    content_type = next((v for k, v in scope["headers"] if k == b"content-type"), b"")
    media = content_type.split(b";", 1)[0].strip().lower()
    if media != b"application/json" or not raw:
        return None
    try:
        return ChatCompletionRequest.model_validate_json(raw)
    except ValidationError:
        return None
