"""Images as the agent sees them: decoded once, bounded in size, hashed by content.

A user's image may arrive as a path, raw bytes, a PIL image, a ``data:`` URL or an http(s) URL.
:func:`load_image` turns any of these into an :class:`InputImage`; http(s) URLs go through the safe
fetcher (no private addresses, byte and time limits).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import io
import math
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Union

from PIL import ExifTags, Image, ImageOps, UnidentifiedImageError

from mmsr_serve.errors import ImageError

ImageSource = Union[str, bytes, os.PathLike[str], Image.Image, "InputImage"]
Fetch = Callable[[str], Awaitable[bytes]]

DEFAULT_MAX_PIXELS = 672 * 672
DEFAULT_MAX_BYTES = 20 * 1024 * 1024
# Refuse decompression bombs well before PIL's own (warning-only) threshold: 24 megapixels is
# about 72 MB of RGB while decoding, and more than any camera picture a user would send.
MAX_DECODED_PIXELS = 24 * 1000 * 1000
# Qwen2-VL-family processors refuse images whose sides are 200 or more times apart.
MAX_ASPECT_RATIO = 199


# The only formats decoded: cameras, browsers and the web use these; every other PIL plugin (EPS
# and its Ghostscript call, PSD, ICNS...) is attack surface for nothing.
DECODED_FORMATS = ("JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF")
# Formats a model server decodes itself (vLLM, SGLang and OpenAI take all three as data URLs).
WIRE_FORMATS = ("PNG", "JPEG", "WEBP")


@dataclass(frozen=True, eq=False)
class EncodedImage:
    """Encoded bytes known to decode to exactly a given image: sent as they are, never re-encoded."""

    data: bytes = field(repr=False)
    format: str  # PIL's name of it: JPEG, PNG, WEBP...

    def data_url(self) -> str:
        """The bytes as a ``data:image/...;base64,`` URL (the one place such URLs are built)."""
        return f"data:image/{self.format.lower()};base64,{base64.b64encode(self.data).decode()}"


@dataclass(frozen=True, eq=False)
class InputImage:
    """A decoded, size-bounded RGB image plus what providers need to search for it.

    ``encoded`` is ``data`` again when it decodes to exactly ``image`` (an RGB PNG, JPEG or WebP
    that needed no downscaling), so that a backend can send it without encoding it again.
    """

    image: Image.Image
    data: bytes = field(repr=False)
    sha256: str
    url: str | None = None
    encoded: EncodedImage | None = field(default=None, repr=False)

    @property
    def size(self) -> tuple[int, int]:
        return self.image.size


def encode_image(
    image: Image.Image, fmt: str = "PNG", quality: int = 90, subsampling: int | None = None
) -> bytes:
    """``image`` encoded; for JPEG at ``quality``, and ``subsampling`` 0 keeps full chroma (4:4:4)."""
    buf = io.BytesIO()
    options: dict[str, int] = {}
    if fmt.upper() == "JPEG":
        options["quality"] = quality
        if subsampling is not None:
            options["subsampling"] = subsampling
    image.save(buf, format=fmt, **options)
    return buf.getvalue()


def to_data_url(image: Image.Image, fmt: str = "PNG") -> str:
    name = "JPEG" if fmt.upper() in ("JPEG", "JPG") else fmt.upper()
    return EncodedImage(encode_image(image, fmt), name).data_url()


_SENT_AS_IS = ("PNG", "JPEG", "WEBP", "GIF")


def file_data_url(path: str | os.PathLike[str]) -> str:
    """An image file as a ``data:`` URL (:func:`bytes_data_url`). Raises :class:`ImageError` for
    a file that is missing or not an image."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ImageError(f"cannot read image {path}: {exc}") from exc
    return bytes_data_url(data, where=str(path))


def bytes_data_url(data: bytes, *, where: str = "image") -> str:
    """Encoded image bytes as a ``data:`` URL: the bytes themselves when they are PNG, JPEG, WebP
    or GIF, else re-encoded as PNG. Raises :class:`ImageError` when they are not an image."""
    try:
        with Image.open(io.BytesIO(data), formats=DECODED_FORMATS) as img:
            fmt = (img.format or "PNG").upper()
            if fmt not in _SENT_AS_IS:
                fmt, data = "PNG", encode_image(img.convert("RGB"), "PNG")
    except (OSError, Image.DecompressionBombError) as exc:
        raise ImageError(f"cannot read image {where}: {exc}") from exc
    return EncodedImage(data, fmt).data_url()


INLINE_DECODE_BYTES = 48 * 1024
"""Encoded images up to this size are decoded on the event loop (a 300x200 JPEG: ~0.3 ms)."""

RESAMPLING = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
}


@dataclass(frozen=True)
class ImageGeometry:
    """The sizes a checkpoint was trained on: at most ``max_pixels``, at least ``min_pixels``
    (either may be None), resized with ``resample``, as a training pipeline resizes its images:
    the sides scaled by ``sqrt(bound / (w * h))`` and truncated to integers."""

    max_pixels: int | None = None
    min_pixels: int | None = None
    resample: str = "bicubic"

    def apply(self, image: Image.Image) -> Image.Image:
        method = RESAMPLING[self.resample]
        w, h = image.size
        if self.max_pixels is not None and w * h > self.max_pixels:
            image = _scaled(image, self.max_pixels, method)
        w, h = image.size
        if self.min_pixels is not None and w * h < self.min_pixels:
            image = _scaled(image, self.min_pixels, method)
        return image


def _scaled(image: Image.Image, pixels: int, method: Image.Resampling) -> Image.Image:
    w, h = image.size
    scale = math.sqrt(pixels / (w * h))
    return image.resize((max(1, int(w * scale)), max(1, int(h * scale))), resample=method)


def fit_pixels(image: Image.Image, max_pixels: int) -> Image.Image:
    """Downscale (keeping the aspect ratio) so that width * height <= max_pixels."""
    w, h = image.size
    if w * h <= max_pixels:
        return image
    return _scaled(image, max_pixels, Image.Resampling.BICUBIC)


def decode_image(
    data: bytes,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    url: str | None = None,
    geometry: ImageGeometry | None = None,
) -> InputImage:
    """Decode encoded image bytes; raises :class:`ImageError` on anything PIL cannot read.

    Downscaled to ``max_pixels``, or, with a ``geometry`` (a checkpoint's), resized by it from
    the full-size picture (its bounds win over ``max_pixels``, which caps only what it leaves open)."""
    try:
        with Image.open(io.BytesIO(data), formats=DECODED_FORMATS) as probe:
            w, h = probe.size
            if w * h > MAX_DECODED_PIXELS:
                raise ImageError(f"image is {w}x{h} pixels, more than the {MAX_DECODED_PIXELS} allowed")
            if max(w, h) > MAX_ASPECT_RATIO * min(w, h):
                raise ImageError(f"image is {w}x{h} pixels: sides more than {MAX_ASPECT_RATIO} times apart")
            if probe.format == "JPEG" and geometry is None:  # a reduced scale still covering max_pixels
                scale = math.sqrt(max_pixels / (w * h))
                probe.draft("RGB", (math.ceil(w * scale), math.ceil(h * scale)))
            probe.load()
            fmt, mode = probe.format, probe.mode
            orientation = probe.getexif().get(ExifTags.Base.Orientation, 1)
            # a phone photo held sideways: upright, as its viewer shows it
            upright = ImageOps.exif_transpose(probe) if orientation != 1 else probe
            image = (upright or probe).convert("RGB")
    except ImageError:
        raise
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as exc:
        raise ImageError(f"cannot decode image: {exc}") from exc
    if geometry is None:
        fitted = fit_pixels(image, max_pixels)
    else:
        fitted = geometry.apply(image)
        fitted = fit_pixels(fitted, max_pixels) if geometry.max_pixels is None else fitted
    # The bytes stand for the pixels only when nothing was converted, drafted or downscaled (an
    # RGBA or palette image would be flattened differently by the model server's decoder).
    exact = fmt in WIRE_FORMATS and mode == "RGB" and fitted.size == (w, h) and orientation == 1
    return InputImage(
        image=fitted,
        data=data,
        sha256=hashlib.sha256(data).hexdigest(),
        url=url,
        encoded=EncodedImage(data, fmt) if exact and fmt else None,
    )


def _read_file(path: Path, max_bytes: int) -> bytes:
    if not path.is_file():
        raise ImageError(f"image file not found: {path}")
    if path.stat().st_size > max_bytes:
        raise ImageError(f"image file is larger than {max_bytes} bytes")
    return path.read_bytes()


def parse_data_url(url: str) -> bytes:
    header, sep, payload = url.partition(",")
    if not sep or not header.startswith("data:image/") or ";base64" not in header:
        raise ImageError("image data URLs must look like data:image/<type>;base64,<data>")
    try:
        return base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ImageError(f"invalid base64 in image data URL: {exc}") from exc


async def load_image(
    source: ImageSource,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    max_bytes: int = DEFAULT_MAX_BYTES,
    fetch: Fetch | None = None,
    geometry: ImageGeometry | None = None,
) -> InputImage:
    """Load an image from a path, bytes, PIL image, data URL or http(s) URL (see
    :func:`decode_image` for ``max_pixels`` and ``geometry``; an InputImage is taken as it is)."""
    if isinstance(source, InputImage):
        return source
    url: str | None = None
    if isinstance(source, Image.Image):
        data = await asyncio.to_thread(encode_image, source.convert("RGB"))
    elif isinstance(source, bytes):
        data = source
    elif isinstance(source, str) and source.startswith("data:"):
        data = parse_data_url(source)
    elif isinstance(source, str) and source.startswith(("http://", "https://")):
        if fetch is None:
            from mmsr_serve.fetch import SafeFetcher

            fetch = SafeFetcher(max_bytes=max_bytes).fetch_image
        data, url = await fetch(source), source
    else:
        data = await asyncio.to_thread(_read_file, Path(os.fspath(source)), max_bytes)
    if len(data) > max_bytes:
        raise ImageError(f"image is {len(data)} bytes, more than the {max_bytes} allowed")
    if len(data) <= INLINE_DECODE_BYTES and geometry is None:
        # A small picture decodes in well under a millisecond: less than the thread hop costs.
        return decode_image(data, max_pixels=max_pixels, url=url)
    # Decoding a large picture takes up to a second: keep it off the event loop.
    return await asyncio.to_thread(decode_image, data, max_pixels=max_pixels, url=url, geometry=geometry)
