"""Thumbnails of image search results: fetched through the safe fetcher, decoded, made small.

A result's thumbnail is a URL chosen by a web page or a search engine, so it goes through
:class:`~mmsr_serve.fetch.SafeFetcher` like any other (``data:image/...`` URLs, which some
APIs inline, are decoded directly). Each is downscaled to at most ``max_pixels`` and re-encoded as
JPEG. A thumbnail that cannot be had leaves its hit without one (title and link still count).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from mmsr_serve.errors import MMSRError
from mmsr_serve.fetch import SafeFetcher
from mmsr_serve.images import decode_image, encode_image, parse_data_url

__all__ = ["THUMBNAIL_MAX_BYTES", "THUMBNAIL_PIXELS", "fetch_thumbnails", "thumbnail_fetcher"]

THUMBNAIL_PIXELS = 256 * 256
THUMBNAIL_MAX_BYTES = 4 * 1024 * 1024
log = logging.getLogger("mmsr.search")


def thumbnail_fetcher(
    allow: Sequence[str] = (), timeout_s: float = 8.0, *, keepalive: bool = False
) -> SafeFetcher:
    """The fetcher for thumbnails; ``keepalive`` for one its owner closes (``aclose``)."""
    return SafeFetcher(allow=allow, max_bytes=THUMBNAIL_MAX_BYTES, timeout_s=timeout_s, keepalive=keepalive)


def _shrink(data: bytes, max_pixels: int) -> bytes:
    return encode_image(decode_image(data, max_pixels=max_pixels).image, "JPEG", quality=85)


async def _one(url: str | None, fetcher: SafeFetcher, max_pixels: int) -> bytes | None:
    if not url:
        return None
    try:
        data = parse_data_url(url) if url.startswith("data:") else await fetcher.fetch_image(url)
        return await asyncio.to_thread(_shrink, data, max_pixels)
    except MMSRError as exc:
        log.debug("no thumbnail from %s: %s", url[:100], exc)
        return None


async def fetch_thumbnails(
    urls: Sequence[str | None], fetcher: SafeFetcher, *, max_pixels: int = THUMBNAIL_PIXELS
) -> list[bytes | None]:
    """JPEG bytes (or ``None``) for each URL, fetched concurrently."""
    return list(await asyncio.gather(*(_one(url, fetcher, max_pixels) for url in urls)))
