"""Perceptual hashing for the local image search: near-duplicate lookup.

Reverse image search mostly answers "where else does this picture appear?", so the local index
looks for near-duplicates of the query: the same picture resized, re-encoded or slightly cropped.

A *signature* is a 192-bit perceptual hash: a 64-bit pHash (signs of low-frequency DCT
coefficients, robust to scaling and compression) and two 64-bit dHashes (signs of horizontal and
of vertical gradients), which separate images whose low frequencies happen to agree. Colour is
ignored on purpose: copies found on the web are often recoloured. The distance between two
signatures is their Hamming distance, 0..192.

Cropping moves content and is what breaks a global hash, so both sides are hashed under several
crops, and the distance from a query to a corpus image is the smallest over all pairs. Each corpus
image is stored under :data:`CORPUS_CROPS` (16): the full image, centre crops of 4, 8 and 12%,
crops of 6% anchored at the four corners and of 10% anchored at the corners and edge midpoints
(the fraction is cut from each side length, split between the two sides as the anchor says). The
query is hashed under :data:`QUERY_CROPS` (6): full, centre 6%, and 4% at the four corners. A
query that is an uneven crop of a corpus image then meets a stored crop of nearly the same window.

How the numbers were chosen: ``python -m tests.search.hash_study`` draws 200 corpus images with
the test fixture's generator and copies each with an uneven crop, a 0.3-1x rescale and JPEG
quality 40-90. Every copy ranked its original first at every crop level (0 to 12%). Distance to
the original, 99th percentile / maximum: uncropped 6 / 8, cropped 5% 15 / 17, 8% 15 / 20, 10%
19 / 23, 12% 23 / 24. Distance from 500 unrelated drawings of the same style to their nearest
corpus image: minimum 31, 1st percentile 35; noise 62-66, flat images 50, gradients 48-54 except
a bare diagonal gradient at 25 (the drawings have gradient backgrounds). The cut-off
:data:`DEFAULT_MAX_DISTANCE` = 27 sits midway between the farthest 10%-cropped copy (23) and the
nearest unrelated drawing (31). Designs measured and dropped on the same data: pHash alone
(64 bits) put unrelated drawings as close as 12 of 64; pHash + horizontal dHash (128 bits) left
no margin between copies and unrelated drawings; a single full-image hash let 10%-cropped copies
drift to 49 of 128 bits. Unrelated photographs differ far more than drawings of one style, so
they are expected well beyond 27. Not handled: mirrored, rotated or heavily cropped copies.
Cost: about 20 ms of hashing per corpus image at build time; a query scans 96 signature pairs
per corpus image with numpy (:class:`SignatureTable`: about 35 ms per 100,000 images on one core).
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path

import imagehash
import numpy as np
from PIL import Image

from mmsr_serve.images import DECODED_FORMATS

HASH_BYTES = 24
HASH_BITS = HASH_BYTES * 8
DEFAULT_MAX_DISTANCE = 27
THUMBNAIL_PX = 256
_THUMBNAIL_QUALITY = 80
# Hashes see at most 32x32 pixels: work on a small greyscale copy, and let the JPEG decoder
# downscale large files straight away.
_HASH_INPUT_PX = 256
_DECODE_PX = 512

Crop = tuple[float, float, float]  # fraction cut from each side length, x anchor, y anchor
CORPUS_CROPS: tuple[Crop, ...] = (
    *((frac, 0.5, 0.5) for frac in (0.0, 0.04, 0.08, 0.12)),
    *((0.06, ax, ay) for ax in (0.0, 1.0) for ay in (0.0, 1.0)),
    *((0.10, ax, ay) for ax in (0.0, 0.5, 1.0) for ay in (0.0, 0.5, 1.0) if (ax, ay) != (0.5, 0.5)),
)
QUERY_CROPS: tuple[Crop, ...] = (
    (0.0, 0.5, 0.5),
    (0.06, 0.5, 0.5),
    *((0.04, ax, ay) for ax in (0.0, 1.0) for ay in (0.0, 1.0)),
)

_POPCOUNT = np.array([bin(i).count("1") for i in range(256)], dtype=np.uint8)
_SCAN_CHUNK = 2048  # corpus images per numpy block: keeps the temporary arrays within the caches


def open_image(path: Path) -> Image.Image:
    """Decode a corpus image as RGB, letting the JPEG decoder downscale very large files."""
    with Image.open(path, formats=DECODED_FORMATS) as img:
        img.draft("RGB", (_DECODE_PX, _DECODE_PX))
        return img.convert("RGB")


def _crop(img: Image.Image, crop: Crop) -> Image.Image:
    frac, ax, ay = crop
    if frac == 0:
        return img
    w, h = img.size
    cut_w, cut_h = round(w * frac), round(h * frac)
    left, top = round(cut_w * ax), round(cut_h * ay)
    return img.crop((left, top, w - (cut_w - left), h - (cut_h - top)))


def signature(img: Image.Image) -> np.ndarray:
    """The packed pHash + horizontal dHash + vertical dHash of one image: 24 bytes."""
    hashes = (imagehash.phash(img), imagehash.dhash(img), imagehash.dhash_vertical(img))
    return np.packbits(np.concatenate([h.hash.ravel() for h in hashes]))


def signatures(img: Image.Image, crops: Sequence[Crop]) -> np.ndarray:
    """Signatures of ``img`` under each crop: shape (len(crops), HASH_BYTES), uint8."""
    grey = img.convert("L")
    if max(grey.size) > _HASH_INPUT_PX:
        grey.thumbnail((_HASH_INPUT_PX, _HASH_INPUT_PX), Image.Resampling.BILINEAR)
    return np.stack([signature(_crop(grey, c)) for c in crops])


def warm() -> None:
    """Hash a blank image once: imports and first-call set-up out of the first query's time."""
    signatures(Image.new("L", (64, 64)), QUERY_CROPS[:1])


def _popcount(words: np.ndarray) -> np.ndarray:
    """Set bits per uint64 word, as uint8 (``numpy.bitwise_count`` exists from numpy 2.0)."""
    if hasattr(np, "bitwise_count"):
        return np.bitwise_count(words)
    return _POPCOUNT[words.view(np.uint8)].reshape(*words.shape, 8).sum(axis=-1, dtype=np.uint8)


class SignatureTable:
    """The corpus signatures laid out for scanning: each of the three 64-bit words of every
    stored crop in its own contiguous column, so a query is a few passes of XOR, popcount and
    minimum over flat arrays. About 35 ms per 100,000 images on one core
    (benchmarks/image_index.py; 7x the previous (N, crops, query crops, words) broadcast)."""

    def __init__(self, corpus: np.ndarray) -> None:
        """``corpus`` is (N, crops, HASH_BYTES) uint8."""
        self.images, self.crops = corpus.shape[0], corpus.shape[1]
        words = np.ascontiguousarray(corpus).view(np.uint64).reshape(-1, HASH_BYTES // 8)
        self._columns = [np.ascontiguousarray(words[:, i]) for i in range(words.shape[1])]

    def __len__(self) -> int:
        return self.images

    def min_distances(self, query: np.ndarray) -> np.ndarray:
        """Smallest Hamming distance from any query signature to any stored crop of each image.

        ``query`` is (Q, HASH_BYTES) uint8; returns (N,) int64.
        """
        q = np.ascontiguousarray(query).view(np.uint64).reshape(len(query), -1)
        out = np.empty(self.images, dtype=np.int64)
        step = _SCAN_CHUNK * self.crops
        for start in range(0, self.images * self.crops, step):
            end = start + step
            best: np.ndarray | None = None
            for row in q:
                dist = _popcount(self._columns[0][start:end] ^ row[0])
                for column, word in zip(self._columns[1:], row[1:], strict=True):
                    dist += _popcount(column[start:end] ^ word)
                best = dist if best is None else np.minimum(best, dist, out=best)
            if best is not None:
                out[start // self.crops : end // self.crops] = best.reshape(-1, self.crops).min(axis=1)
        return out


def min_distances(query: np.ndarray, corpus: np.ndarray) -> np.ndarray:
    """Smallest Hamming distance from any query signature to any signature of each corpus image.

    ``query`` is (Q, HASH_BYTES) and ``corpus`` (N, V, HASH_BYTES), both uint8; returns (N,) int.
    Keep a :class:`SignatureTable` to scan one corpus many times.
    """
    return SignatureTable(corpus).min_distances(query)


def thumbnail_jpeg(img: Image.Image, max_px: int = THUMBNAIL_PX) -> bytes:
    thumb = img.copy()
    thumb.thumbnail((max_px, max_px), Image.Resampling.LANCZOS)
    buf = io.BytesIO()
    thumb.save(buf, format="JPEG", quality=_THUMBNAIL_QUALITY)
    return buf.getvalue()
