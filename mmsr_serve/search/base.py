"""Search tool interfaces and result types.

Two tools, as in the protocol: image search (the user's image -> pages whose images match, each a
title, a url and a thumbnail) and text search (a query -> pages, each a title, a url and a text
summary). A provider raises :class:`~mmsr_serve.errors.SearchError` for anything that went wrong;
the agent loop turns that into a tool result the model reads.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from PIL import Image

from mmsr_serve.errors import ImageError
from mmsr_serve.images import InputImage, decode_image

THUMBNAIL_MAX_PIXELS = 256 * 256
# A few popular images of a corpus stay decoded: 64 of them, each kept with its encoded bytes,
# which are only cached up to 512 kB (a thumbnail is a few tens of kB; at most about 45 MB in all).
_DECODED_THUMBNAILS = 64
_CACHED_THUMBNAIL_BYTES = 512 * 1024


@dataclass(frozen=True)
class ImageHit:
    title: str
    url: str
    thumbnail: bytes | None = field(default=None, repr=False)  # encoded JPEG/PNG
    score: float | None = None

    def thumbnail_image(self) -> Image.Image | None:
        """The decoded thumbnail, or None when there is none or it is not a usable image (a
        provider's bad bytes must not break the run: the hit is then shown by its title only)."""
        decoded = self.decoded_thumbnail()
        return decoded.image if decoded else None

    def decoded_thumbnail(self) -> InputImage | None:
        """:meth:`thumbnail_image` with its encoded bytes (sent as they are where they fit)."""
        if self.thumbnail is None:
            return None
        if len(self.thumbnail) > _CACHED_THUMBNAIL_BYTES:
            return _decoded_thumbnail.__wrapped__(self.thumbnail)
        return _decoded_thumbnail(self.thumbnail)


@functools.lru_cache(maxsize=_DECODED_THUMBNAILS)
def _decoded_thumbnail(data: bytes) -> InputImage | None:
    """Decoded once for every search that finds the same picture (a local corpus's hits repeat;
    the result is never changed in place: backends read it, and copy to resize or hash)."""
    try:
        return decode_image(data, max_pixels=THUMBNAIL_MAX_PIXELS)
    except ImageError:
        return None


@dataclass(frozen=True)
class TextHit:
    title: str
    url: str
    text: str
    score: float | None = None


Hit = ImageHit | TextHit


@dataclass(frozen=True)
class SearchResults:
    """What a tool returns: the hits plus how they were obtained."""

    hits: list[Hit]
    provider: str
    cached: bool = False


@runtime_checkable
class ImageSearchTool(Protocol):
    name: str

    async def search_image(self, image: InputImage, k: int) -> SearchResults: ...


@runtime_checkable
class TextSearchTool(Protocol):
    name: str

    async def search_text(self, query: str, k: int) -> SearchResults: ...
