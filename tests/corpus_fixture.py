"""A small, fully offline corpus for tests: ``docs.jsonl`` plus procedurally drawn PNG images.

Every document is an invented object ("The Glass Heron of Vell") described by a few sentences
of facts (year, designer, country, city, height, material) that tests can ask about. Titles use
distinct words, so a query made of a document's key terms has exactly one right answer. Every
fourth document has no image. Images are drawn from the seed (gradient background, stripes at a
random angle, a handful of filled shapes), so they differ in *structure*, not just colour: the
perceptual hashes used by the local index work on luminance and would not see a recolouring.

:func:`variant` makes what a user would upload of a corpus image found on the web: a slightly
cropped, resized, JPEG re-encoded copy.
"""

from __future__ import annotations

import io
import json
import math
import random
import shutil
from pathlib import Path
from typing import Any, NamedTuple

from PIL import Image, ImageDraw

# fmt: off
MATERIALS = ["Glass", "Copper", "Marble", "Cedar", "Ivory", "Cobalt", "Amber", "Granite", "Silver",
             "Basalt", "Jade", "Pewter", "Onyx", "Walnut", "Bronze", "Slate"]
CREATURES = ["Heron", "Falcon", "Lynx", "Otter", "Stag", "Salamander", "Tortoise", "Raven", "Badger",
             "Moth", "Marten", "Ibis", "Viper", "Walrus", "Kestrel", "Bison"]
PLACES = ["Vell", "Orrin", "Tazmar", "Quillby", "Brask", "Mirelund", "Oskaveth", "Pellacore", "Zundra",
          "Hathmoor", "Cyrrus", "Dunvale", "Ekkerot", "Fennimar", "Glostrup", "Ivrahel"]
DESIGNERS = ["Amalia Korsgaard", "Tobias Wrenfield", "Ines Dubrovka", "Kofi Mensah-Arlo",
             "Lucia Ferrandez", "Haruto Imabari", "Greta Solvik", "Matteo Bruni", "Noor Haddadin",
             "Pavel Ostrovski", "Selin Aydemir", "Wen Zhaolin"]
COUNTRIES = ["Norway", "Portugal", "Chile", "Kenya", "Japan", "Canada", "Estonia", "Morocco",
             "Uruguay", "Vietnam", "Iceland", "Greece"]
KINDS = ["bronze sculpture", "stained-glass window", "carved fountain", "clockwork automaton",
         "ceremonial lantern", "mosaic floor", "bell tower ornament", "ship figurehead"]
# fmt: on


def _facts(rng: random.Random, i: int, title_words: tuple[str, str, str]) -> dict[str, Any]:
    material, creature, place = title_words
    return {
        "title": f"The {material} {creature} of {place}",
        "kind": rng.choice(KINDS),
        "designer": DESIGNERS[i % len(DESIGNERS)],
        "country": COUNTRIES[(i * 5 + 3) % len(COUNTRIES)],
        "year": 1700 + rng.randrange(300),
        "height": rng.randrange(2, 40) / 2,
    }


def _text(f: dict[str, Any]) -> str:
    return (
        f"{f['title']} is a {f['kind']} made in {f['year']}. "
        f"It was designed by {f['designer']} and stands {f['height']} metres tall. "
        f"The work was first shown in {f['country']}, where it became a local landmark. "
        f"Restorers cleaned it in {f['year'] + 150} and found the maker's initials on its base. "
        "Visitors may photograph it from the public gallery."
    )


def _luma_colour(rng: random.Random, lo: int, hi: int) -> tuple[int, int, int]:
    """A random colour whose grey level lies in [lo, hi] (perceptual hashes only see luminance)."""
    grey = rng.randint(lo, hi)
    return tuple(max(0, min(255, grey + rng.randint(-40, 40))) for _ in range(3))  # type: ignore[return-value]


def draw_image(seed: int, size: tuple[int, int] = (320, 240)) -> Image.Image:
    """A structurally distinctive RGB image determined by ``seed``."""
    rng = random.Random(seed * 7919 + 17)
    w, h = size
    dark_first = rng.random() < 0.5
    a, b = _luma_colour(rng, 20, 90), _luma_colour(rng, 160, 235)
    if not dark_first:
        a, b = b, a
    angle = rng.uniform(0, 2 * math.pi)
    ca, sa = math.cos(angle), math.sin(angle)
    # Gradient background along a random direction.
    grad = Image.linear_gradient("L").resize((w, h)).rotate(math.degrees(angle), expand=False, fillcolor=128)
    img = Image.composite(Image.new("RGB", size, a), Image.new("RGB", size, b), grad)
    draw = ImageDraw.Draw(img)
    # Stripes: parallel bands at a random angle and period.
    period = rng.randint(18, 60)
    stripe = _luma_colour(rng, 0, 255)
    diag = int(math.hypot(w, h))
    for off in range(-diag, diag, period):
        cx, cy = w / 2 + off * ca, h / 2 + off * sa
        pts = [(cx - diag * sa, cy + diag * ca), (cx + diag * sa, cy - diag * ca)]
        draw.line(pts, fill=stripe, width=max(2, period // 4))
    # A few large shapes at random places.
    for _ in range(rng.randint(3, 5)):
        x0, y0 = rng.randint(-20, w - 40), rng.randint(-20, h - 40)
        x1, y1 = x0 + rng.randint(40, w // 2), y0 + rng.randint(40, h // 2)
        fill = _luma_colour(rng, 0, 255)
        shape = rng.choice(["ellipse", "rect", "triangle"])
        if shape == "ellipse":
            draw.ellipse((x0, y0, x1, y1), fill=fill)
        elif shape == "rect":
            draw.rectangle((x0, y0, x1, y1), fill=fill)
        else:
            draw.polygon([(x0, y1), ((x0 + x1) // 2, y0), (x1, y1)], fill=fill)
    return img


def make_corpus(root: Path, n: int = 12, seed: int = 0) -> Path:
    """Write ``n`` documents (images for 3 in 4 of them) under ``root``; returns ``root``."""
    if n > len(MATERIALS):
        raise ValueError(f"make_corpus supports at most {len(MATERIALS)} documents")
    rng = random.Random(seed)
    root.mkdir(parents=True, exist_ok=True)
    (root / "images").mkdir(exist_ok=True)
    materials, creatures, places = (rng.sample(words, n) for words in (MATERIALS, CREATURES, PLACES))
    rows = []
    for i in range(n):
        facts = _facts(rng, i, (materials[i], creatures[i], places[i]))
        row: dict[str, Any] = {
            "id": f"doc-{i:03d}",
            "url": f"https://museum.example/{materials[i].lower()}-{creatures[i].lower()}",
            "title": facts["title"],
            "text": _text(facts),
        }
        if i % 4 != 3:
            row["image"] = f"images/doc-{i:03d}.png"
            size = (rng.choice([280, 320, 400]), rng.choice([220, 240, 300]))
            draw_image(seed * 1000 + i, size).save(root / row["image"])
        rows.append(row)
    with (root / "docs.jsonl").open("w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row) + "\n")
    return root


class DefaultCorpus(NamedTuple):
    """A corpus folder written by :func:`make_corpus` and its index, built elsewhere."""

    root: Path
    index: Path


def copy_corpus(src: Path, dest: Path) -> Path:
    """A copy of the corpus folder ``src`` at ``dest``: fresh files, as if :func:`make_corpus` had
    written them there (the index, if ``src`` holds one, is copied too)."""
    return Path(shutil.copytree(src, dest, copy_function=shutil.copyfile))


def read_docs(root: Path) -> list[dict[str, Any]]:
    """The rows of ``root/docs.jsonl``."""
    lines = (root / "docs.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def variant(
    img: Image.Image, *, crop: float = 0.08, scale: float = 0.7, quality: int = 75, seed: int = 0
) -> Image.Image:
    """A copy as found elsewhere: ``crop`` of each side length cut off (unevenly between the two
    sides), resized by ``scale``, then JPEG re-encoded at ``quality``."""
    rng = random.Random(seed)
    w, h = img.size
    cut_w, cut_h = round(w * crop), round(h * crop)
    left, top = rng.randint(0, cut_w), rng.randint(0, cut_h)
    cropped = img.crop((left, top, w - (cut_w - left), h - (cut_h - top)))
    resized = cropped.resize((max(1, round(cropped.width * scale)), max(1, round(cropped.height * scale))))
    buf = io.BytesIO()
    resized.convert("RGB").save(buf, format="JPEG", quality=quality)
    buf.seek(0)
    with Image.open(buf) as out:
        return out.convert("RGB")
