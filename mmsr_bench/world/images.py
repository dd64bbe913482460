"""Procedural entity pictures and the variant views of them that users (and other pages) show.

Each entity has one *master* picture (:data:`MASTER_PX` square), drawn from its look seed:

- a two-tone gradient background along a random direction, dark to light;
- a texture: stripes, dots, checks or rings, at a random scale and angle;
- the motif of its kind (a tower, an animal, a vehicle, a framed picture) at a random place and
  size, in a colour that stands out from the background;
- one or two accent shapes.

The local index's image search hashes luminance structure, not colour (see
:mod:`mmsr_serve.search._image_index`), so the signature that tells entities apart is mostly the
gradient direction, the motif's place and the accents; colours make them easy to tell apart for
a small vision model. Pictures are stored at :data:`IMAGE_PX` (16 image tokens for Qwen2.5-VL).

Views are what a user uploads or another page re-posts: :func:`make_view` rotates a little,
crops unevenly, resizes to :data:`IMAGE_PX`, shifts hue, saturation and brightness, adds noise
and re-encodes as JPEG. :data:`QUERY_VIEW` is the strength used for question images,
:data:`PAGE_VIEW` the milder one used for the web pages that carry an entity's picture. The
limits keep views within what the perceptual hash is built to match (crops up to about 10%;
rotations are not handled by the hash beyond a few degrees): see docs/world.md for the measured
rank-1 rates.
"""

from __future__ import annotations

import io
import math
import random
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

MASTER_PX = 224
IMAGE_PX = 112
Colour = tuple[int, int, int]


@dataclass(frozen=True)
class ViewStrength:
    """Ranges of the random changes of a view (each drawn uniformly)."""

    max_rotation_deg: float
    max_crop: float
    """Fraction cut from each side length, split unevenly between the two sides."""
    max_hue_shift: float
    """Fraction of the colour wheel."""
    max_tone_change: float
    """Relative change of saturation and of brightness."""
    noise_sigma: tuple[float, float]
    jpeg_quality: tuple[int, int]


QUERY_VIEW = ViewStrength(3.0, 0.06, 0.05, 0.12, (2.0, 6.0), (60, 90))
PAGE_VIEW = ViewStrength(0.0, 0.04, 0.02, 0.05, (0.0, 1.5), (80, 92))


def _luma(colour: Colour) -> float:
    r, g, b = colour
    return 0.299 * r + 0.587 * g + 0.114 * b


def _colour(rng: random.Random, lo: int, hi: int) -> Colour:
    """A saturated random colour whose luminance lies within [lo, hi]."""
    for _ in range(100):
        colour = (rng.randint(0, 255), rng.randint(0, 255), rng.randint(0, 255))
        if lo <= _luma(colour) <= hi and max(colour) - min(colour) > 60:
            return colour
    grey = (lo + hi) // 2
    return (grey, grey, grey)


def _background(rng: random.Random) -> Image.Image:
    dark, light = _colour(rng, 25, 95), _colour(rng, 150, 230)
    angle = rng.uniform(0, 360)
    ramp = Image.linear_gradient("L").resize((MASTER_PX, MASTER_PX))
    ramp = ramp.rotate(angle, resample=Image.Resampling.BILINEAR, fillcolor=128)
    return Image.composite(Image.new("RGB", ramp.size, light), Image.new("RGB", ramp.size, dark), ramp)


def _texture(draw: ImageDraw.ImageDraw, rng: random.Random) -> None:
    kind = rng.choice(("stripes", "dots", "checks", "rings"))
    colour = _colour(rng, 0, 255)
    period = rng.randint(20, 44)
    n = MASTER_PX
    if kind == "stripes":
        angle = rng.uniform(0, math.pi)
        ca, sa = math.cos(angle), math.sin(angle)
        for off in range(-2 * n, 2 * n, period):
            cx, cy = n / 2 + off * ca, n / 2 + off * sa
            draw.line(
                [(cx - 2 * n * sa, cy + 2 * n * ca), (cx + 2 * n * sa, cy - 2 * n * ca)],
                fill=colour,
                width=max(3, period // 3),
            )
    elif kind == "dots":
        r = period // 4
        for x in range(rng.randint(0, period), n, period):
            for y in range(rng.randint(0, period), n, period):
                draw.ellipse((x - r, y - r, x + r, y + r), fill=colour)
    elif kind == "checks":
        for i, x in enumerate(range(0, n, period)):
            for j, y in enumerate(range(0, n, period)):
                if (i + j) % 2:
                    draw.rectangle((x, y, x + period - 1, y + period - 1), fill=colour)
    else:
        cx, cy = rng.randint(0, n), rng.randint(0, n)
        for r in range(period, 2 * n, period):
            draw.ellipse((cx - r, cy - r, cx + r, cy + r), outline=colour, width=max(3, period // 4))


def _motif(draw: ImageDraw.ImageDraw, rng: random.Random, kind: str, colour: Colour) -> None:
    """The kind's silhouette, 40-60% of the picture, somewhere near the middle."""
    s = rng.uniform(0.40, 0.60) * MASTER_PX
    x0 = rng.uniform(0.05, 0.95) * (MASTER_PX - s)
    y0 = rng.uniform(0.05, 0.95) * (MASTER_PX - s)
    x1, y1, xm = x0 + s, y0 + s, x0 + s / 2
    if kind == "landmark":  # a tower with a pointed roof
        w = s * rng.uniform(0.25, 0.45)
        draw.rectangle((xm - w / 2, y0 + s * 0.3, xm + w / 2, y1), fill=colour)
        draw.polygon([(xm - w * 0.8, y0 + s * 0.3), (xm, y0), (xm + w * 0.8, y0 + s * 0.3)], fill=colour)
    elif kind == "species":  # a body and a head
        draw.ellipse((x0, y0 + s * 0.3, x1 - s * 0.25, y1 - s * 0.1), fill=colour)
        draw.ellipse((x1 - s * 0.4, y0 + s * 0.1, x1, y0 + s * 0.45), fill=colour)
    elif kind == "vehicle":  # a body, a cabin and two wheels
        draw.rectangle((x0, y0 + s * 0.35, x1, y0 + s * 0.75), fill=colour)
        draw.rectangle((x0 + s * 0.2, y0 + s * 0.1, x0 + s * 0.7, y0 + s * 0.35), fill=colour)
        for cx in (x0 + s * 0.22, x1 - s * 0.22):
            draw.ellipse((cx - s * 0.14, y1 - s * 0.38, cx + s * 0.14, y1 - s * 0.1), fill=colour)
    else:  # artwork: a frame around a diagonal
        width = max(4, int(s * 0.08))
        draw.rectangle((x0, y0, x1, y1), outline=colour, width=width)
        draw.line((x0, y1, x1, y0), fill=colour, width=width)


def _accent(draw: ImageDraw.ImageDraw, rng: random.Random) -> None:
    s = rng.uniform(0.15, 0.3) * MASTER_PX
    x0, y0 = rng.uniform(-0.1, 1.0) * (MASTER_PX - s), rng.uniform(-0.1, 1.0) * (MASTER_PX - s)
    colour = _colour(rng, 0, 255)
    shape = rng.choice(("ellipse", "rect", "triangle"))
    if shape == "ellipse":
        draw.ellipse((x0, y0, x0 + s, y0 + s), fill=colour)
    elif shape == "rect":
        draw.rectangle((x0, y0, x0 + s, y0 + s * rng.uniform(0.4, 1.0)), fill=colour)
    else:
        draw.polygon([(x0, y0 + s), (x0 + s / 2, y0), (x0 + s, y0 + s)], fill=colour)


def draw_master(look: str, kind: str) -> Image.Image:
    """The master picture (MASTER_PX square, RGB) of an entity of ``kind`` with look seed ``look``."""
    rng = random.Random(f"look:{look}")
    img = _background(rng)
    draw = ImageDraw.Draw(img)
    _texture(draw, rng)
    mid = _luma(img.resize((1, 1), Image.Resampling.BOX).getpixel((0, 0)))  # type: ignore[arg-type]
    motif = _colour(rng, 0, 70) if mid > 128 else _colour(rng, 185, 255)
    _motif(draw, rng, kind, motif)
    for _ in range(rng.randint(1, 2)):
        _accent(draw, rng)
    return img


def downscale(img: Image.Image) -> Image.Image:
    return img.resize((IMAGE_PX, IMAGE_PX), Image.Resampling.LANCZOS)


def png_bytes(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG", optimize=False)
    return buf.getvalue()


def _recolour(img: Image.Image, hue_shift: float, saturation: float, brightness: float) -> Image.Image:
    """Turn the hue by ``hue_shift`` of the wheel and scale saturation and brightness, in YCbCr:
    the chroma plane is rotated and scaled, the luma only scaled, so luminance structure (what the
    image search hashes) is kept."""
    ycc = np.asarray(img.convert("YCbCr"), dtype=np.float32)
    angle = 2 * math.pi * hue_shift
    cb, cr = ycc[..., 1] - 128, ycc[..., 2] - 128
    cos, sin = math.cos(angle) * saturation, math.sin(angle) * saturation
    out = np.stack([ycc[..., 0] * brightness, 128 + cos * cb - sin * cr, 128 + sin * cb + cos * cr], -1)
    return Image.fromarray(np.clip(out, 0, 255).round().astype(np.uint8), mode="YCbCr").convert("RGB")


def make_view(master: Image.Image, rng: random.Random, strength: ViewStrength = QUERY_VIEW) -> bytes:
    """A JPEG (IMAGE_PX square) of ``master`` rotated, cropped, recoloured and noised by ``rng``."""
    img = master
    angle = rng.uniform(-strength.max_rotation_deg, strength.max_rotation_deg)
    if angle:
        fill = img.resize((1, 1), Image.Resampling.BOX).getpixel((0, 0))
        img = img.rotate(angle, resample=Image.Resampling.BICUBIC, fillcolor=fill)
    w, h = img.size
    cut_w, cut_h = (round(side * rng.uniform(0, strength.max_crop)) for side in (w, h))
    left, top = rng.randint(0, cut_w), rng.randint(0, cut_h)
    img = downscale(img.crop((left, top, w - (cut_w - left), h - (cut_h - top))))
    tone = strength.max_tone_change
    img = _recolour(
        img,
        rng.uniform(-strength.max_hue_shift, strength.max_hue_shift),
        1 + rng.uniform(-tone, tone),
        1 + rng.uniform(-tone, tone),
    )
    sigma = rng.uniform(*strength.noise_sigma)
    pixels = np.asarray(img, dtype=np.float32)
    noise = np.random.default_rng(rng.getrandbits(32)).normal(0.0, sigma, pixels.shape)
    img = Image.fromarray(np.clip(pixels + noise, 0, 255).round().astype(np.uint8))
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=rng.randint(*strength.jpeg_quality))
    return buf.getvalue()
