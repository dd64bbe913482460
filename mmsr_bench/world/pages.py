"""The documents of an entity: one reference page that states its facts, and a few web pages.

The reference page is key-value text, one field per line::

    name: Bamoti
    kind: landmark
    year: 1843
    architect: Roleku
    country: Vasuna

The local index cuts its text hits to the lines (sentences) that contain query words, so the text
search ``Bamoti architect`` shows ``name: Bamoti … architect: Roleku``: a query-focused extract
that a small model can copy a value from. Web pages carry the entity's picture (a mild variant)
and its name in the title, so image search answers with the name; their text states no facts
and does not repeat the name.
"""

from __future__ import annotations

import random
from typing import Any

from mmsr_bench.world.entities import Entity

REFERENCE_HOST = "wiki.example"
# The name is in the title only: the reference page, which has it in both, ranks first.
_WEB_PAGES = (
    ("photos.example", "{name} photos", "Photos of this {kind}, taken by visitors."),
    ("gallery.example", "{name} gallery", "A gallery of pictures of this {kind}."),
    ("travel.example", "{name} visit", "Notes from a visit, with pictures of the {kind}."),
    ("forum.example", "{name} picture", "Someone posted a picture of this {kind}."),
)
MAX_WEB_PAGES = len(_WEB_PAGES)


def reference_text(entity: Entity) -> str:
    lines = [f"name: {entity.name}", f"kind: {entity.kind}"]
    lines += [f"{key}: {value}" for key, value in entity.facts.items()]
    return "\n".join(lines)


def reference_page(entity: Entity) -> dict[str, Any]:
    return {
        "id": entity.id,
        "url": f"https://{REFERENCE_HOST}/{entity.id}",
        "title": entity.name,
        "text": reference_text(entity),
    }


def web_pages(entity: Entity, count: int, rng: random.Random) -> list[dict[str, Any]]:
    """``count`` pages (at most :data:`MAX_WEB_PAGES`) that show the entity's picture."""
    if not 0 <= count <= MAX_WEB_PAGES:
        raise ValueError(f"an entity has 0 to {MAX_WEB_PAGES} web pages, not {count}")
    pages = []
    for n, (host, title, text) in enumerate(rng.sample(_WEB_PAGES, count)):
        pages.append(
            {
                "id": f"{entity.id}-web{n + 1}",
                "url": f"https://{host}/{entity.id}",
                "title": title.format(name=entity.name),
                "text": text.format(name=entity.name, kind=entity.kind),
            }
        )
    return pages
