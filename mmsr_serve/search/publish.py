"""Publishing a user's image at an unguessable, expiring URL, for reverse image search APIs.

Google Lens (through SerpAPI) fetches the image it searches for from a URL. An image that reached
the server as a ``data:`` URL or a file has none, so :class:`ImagePublisher` serves it for a
moment at ``{public_base_url}/public/images/{token}.jpg``: the token is 256 random bits, the entry
expires after ``ttl_s`` seconds and is removed as soon as the search that needed it is done
(:meth:`ImagePublisher.published`). What is served is the image as the model sees it (at most
672*672 pixels), re-encoded as JPEG, never the original upload.

``public_base_url`` must be reachable from the provider (the internet): the gateway's public
address or a reverse proxy forwarding ``/public/images/`` to it. Entries are kept in this
process's memory, so with several gateways behind a load balancer that path must be routed to
the gateway that published (or run one gateway per public address).
"""

from __future__ import annotations

import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from mmsr_serve.images import InputImage, encode_image

__all__ = ["PUBLIC_IMAGE_PATH", "ImagePublisher"]

PUBLIC_IMAGE_PATH = "/public/images/"
_SUFFIX = ".jpg"


class ImagePublisher:
    def __init__(self, base_url: str, *, ttl_s: float = 300.0, max_images: int = 512) -> None:
        if not base_url.startswith(("http://", "https://")):
            raise ValueError(f"the public base URL must be an http(s) URL, got {base_url!r}")
        self.base_url = base_url.rstrip("/")
        self.ttl_s = ttl_s
        self.max_images = max_images
        self._images: OrderedDict[str, tuple[bytes, float]] = OrderedDict()
        self._lock = threading.Lock()

    def publish(self, image: InputImage) -> tuple[str, str]:
        """``(token, url)``: the image is served at ``url`` until it expires or is revoked."""
        data = encode_image(image.image, "JPEG", quality=90)
        token = secrets.token_urlsafe(32)
        now = time.monotonic()
        with self._lock:
            self._purge(now)
            while len(self._images) >= self.max_images:
                self._images.popitem(last=False)
            self._images[token] = (data, now + self.ttl_s)
        return token, f"{self.base_url}{PUBLIC_IMAGE_PATH}{token}{_SUFFIX}"

    def revoke(self, token: str) -> None:
        with self._lock:
            self._images.pop(token, None)

    @asynccontextmanager
    async def published(self, image: InputImage) -> AsyncIterator[str]:
        """The image's public URL for the duration of the block."""
        token, url = self.publish(image)
        try:
            yield url
        finally:
            self.revoke(token)

    def get(self, name: str) -> bytes | None:
        """The JPEG served as ``name`` (``{token}.jpg``), or ``None`` if unknown or expired."""
        token = name.removesuffix(_SUFFIX)
        with self._lock:
            self._purge(time.monotonic())
            entry = self._images.get(token)
        return entry[0] if entry is not None else None

    def __len__(self) -> int:
        with self._lock:
            self._purge(time.monotonic())
            return len(self._images)

    def _purge(self, now: float) -> None:
        expired = [token for token, (_, expires) in self._images.items() if expires <= now]
        for token in expired:
            del self._images[token]
