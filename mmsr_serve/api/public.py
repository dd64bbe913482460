"""``GET /public/images/{token}.jpg``: the images published for reverse image search providers.

Open without an API key (the provider fetching them has none); the unguessable, short-lived
token is the access control (see :mod:`mmsr_serve.search.publish`). Unknown or expired tokens
are a plain 404; nothing is cached or indexed downstream.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from mmsr_serve.search.publish import PUBLIC_IMAGE_PATH, ImagePublisher

router = APIRouter()
_HEADERS = {"Cache-Control": "no-store", "X-Robots-Tag": "noindex", "X-Content-Type-Options": "nosniff"}


@router.get(PUBLIC_IMAGE_PATH + "{name}", include_in_schema=False)
async def public_image(name: str, request: Request) -> Response:
    publisher: ImagePublisher | None = getattr(request.app.state, "publisher", None)
    data = publisher.get(name) if publisher is not None else None
    if data is None:
        return Response(status_code=404, headers=_HEADERS)
    return Response(data, media_type="image/jpeg", headers=_HEADERS)
