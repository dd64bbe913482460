"""API keys: ``Authorization: Bearer KEY`` on every path but the probes (``/health``, ``/ready``:
a load balancer or the container's health check has no key, and their answers name no address),
``/metrics`` and the images published for reverse image search (``/public/images/...``, guarded
by their unguessable, expiring tokens: the search provider fetching them has no key).

Keys are compared in constant time (each given key is compared with every configured key, so the
time does not tell which one nearly matched). Without configured keys the server is open.
"""

from __future__ import annotations

import hmac

from starlette.types import ASGIApp, Receive, Scope, Send

from mmsr_serve.api.errors import error_response
from mmsr_serve.errors import Unauthorized
from mmsr_serve.search.publish import PUBLIC_IMAGE_PATH

OPEN_PATHS = frozenset({"/health", "/ready", "/metrics"})


def key_matches(given: str, keys: list[str]) -> bool:
    matched = False
    for key in keys:
        matched |= hmac.compare_digest(given.encode(), key.encode())
    return matched


class AuthMiddleware:
    def __init__(self, app: ASGIApp, keys: list[str]) -> None:
        self.app = app
        self.keys = list(keys)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope["path"] if scope["type"] == "http" else ""
        if not self.keys or not path or path in OPEN_PATHS or path.startswith(PUBLIC_IMAGE_PATH):
            await self.app(scope, receive, send)
            return
        header = dict(scope["headers"]).get(b"authorization", b"").decode("latin-1")
        scheme, _, given = header.partition(" ")
        if scheme.lower() != "bearer" or not key_matches(given.strip(), self.keys):
            message = "missing API key" if not header else "incorrect API key provided"
            exc = Unauthorized(message, headers={"WWW-Authenticate": "Bearer"})
            await error_response(exc)(scope, receive, send)
            return
        await self.app(scope, receive, send)
