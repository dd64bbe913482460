"""Publishing a user's image at an unguessable, expiring URL, for reverse image search APIs.

Google Lens (through SerpAPI) fetches the image it searches for from a URL. An image that reached
the server as a ``data:`` URL or a file has none, so :class:`ImagePublisher` serves it for a
moment at ``{public_base_url}/public/images/{token}.jpg``: the token is 256 random bits, the entry
expires after ``ttl_s`` seconds and is removed as soon as the search that needed it is done
(:meth:`ImagePublisher.published`). What is served is the image as the model sees it (at most
672*672 pixels), re-encoded as JPEG, never the original upload.

``public_base_url`` must be reachable from the provider (the internet): the gateway's public
address or a reverse proxy forwarding ``/public/images/`` to it. Entries are kept in this
process's memory unless ``directory`` is given: then each is a file ``{token}.jpg`` there
(written whole, then renamed into place; expiry by its modification time), so every process that
shares the directory serves every image. ``mmsr serve --workers N`` gives its workers one; with
several gateways behind a load balancer, give them a shared directory (``public_image_dir``) or
route the path to the gateway that published.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import tempfile
import threading
import time
from collections import OrderedDict
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from mmsr_serve.images import InputImage, encode_image

__all__ = ["PUBLIC_IMAGE_PATH", "ImagePublisher"]

PUBLIC_IMAGE_PATH = "/public/images/"
_SUFFIX = ".jpg"
_TOKEN = re.compile(r"[A-Za-z0-9_-]{43}")  # what secrets.token_urlsafe(32) gives, nothing else


class ImagePublisher:
    def __init__(
        self,
        base_url: str,
        *,
        ttl_s: float = 300.0,
        max_images: int = 512,
        directory: str | os.PathLike[str] | None = None,
    ) -> None:
        if not base_url.startswith(("http://", "https://")):
            raise ValueError(f"the public base URL must be an http(s) URL, got {base_url!r}")
        self.base_url = base_url.rstrip("/")
        self.ttl_s = ttl_s
        self.max_images = max_images
        self.directory = Path(directory) if directory is not None else None
        if self.directory is not None:
            self.directory.mkdir(parents=True, exist_ok=True)
        self._images: OrderedDict[str, tuple[bytes, float]] = OrderedDict()
        self._lock = threading.Lock()

    def publish(self, image: InputImage) -> tuple[str, str]:
        """``(token, url)``: the image is served at ``url`` until it expires or is revoked."""
        data = encode_image(image.image, "JPEG", quality=90)
        token = secrets.token_urlsafe(32)
        if self.directory is not None:
            self._purge_files(room=1)
            self._write(token, data)
        else:
            now = time.monotonic()
            with self._lock:
                self._purge(now)
                while len(self._images) >= self.max_images:
                    self._images.popitem(last=False)
                self._images[token] = (data, now + self.ttl_s)
        return token, f"{self.base_url}{PUBLIC_IMAGE_PATH}{token}{_SUFFIX}"

    def revoke(self, token: str) -> None:
        if self.directory is not None:
            if _TOKEN.fullmatch(token):
                with contextlib.suppress(FileNotFoundError):
                    (self.directory / f"{token}{_SUFFIX}").unlink()
            return
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
        if self.directory is not None:
            return self._read(token)
        with self._lock:
            self._purge(time.monotonic())
            entry = self._images.get(token)
        return entry[0] if entry is not None else None

    def __len__(self) -> int:
        if self.directory is not None:
            self._purge_files()
            return len(self._files())
        with self._lock:
            self._purge(time.monotonic())
            return len(self._images)

    def _purge(self, now: float) -> None:
        expired = [token for token, (_, expires) in self._images.items() if expires <= now]
        for token in expired:
            del self._images[token]

    # --- the shared directory ---

    def _write(self, token: str, data: bytes) -> None:
        assert self.directory is not None
        fd, tmp = tempfile.mkstemp(dir=self.directory, prefix=".", suffix=".part")
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(data)
            os.replace(tmp, self.directory / f"{token}{_SUFFIX}")
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise

    def _read(self, token: str) -> bytes | None:
        assert self.directory is not None
        if not _TOKEN.fullmatch(token):  # a name is never a path
            return None
        path = self.directory / f"{token}{_SUFFIX}"
        try:
            if time.time() - path.stat().st_mtime > self.ttl_s:
                path.unlink(missing_ok=True)
                return None
            return path.read_bytes()
        except FileNotFoundError:
            return None

    def _files(self) -> list[tuple[float, Path]]:
        assert self.directory is not None
        found = []
        for path in self.directory.glob(f"*{_SUFFIX}"):
            with contextlib.suppress(FileNotFoundError):
                found.append((path.stat().st_mtime, path))
        return sorted(found)

    def _purge_files(self, room: int = 0) -> None:
        """Drop expired files, and the oldest beyond ``max_images - room``."""
        files = self._files()
        now = time.time()
        stale = [path for mtime, path in files if now - mtime > self.ttl_s]
        fresh = [path for mtime, path in files if now - mtime <= self.ttl_s]
        stale += fresh[: max(0, len(fresh) - self.max_images + room)]
        for path in stale:
            path.unlink(missing_ok=True)
