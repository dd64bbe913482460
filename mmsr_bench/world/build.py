"""Writing a world to a folder: the corpus (local index format), the question sets, a manifest.

Layout of ``OUT``::

    world.json                 config, counts, and every entity with its facts and group
    corpus/docs.jsonl          reference page + web pages per entity (``mmsr index build`` format)
    corpus/images/             <id>.png (reference picture), <id>-webN.jpg (re-posted variants)
    corpus/.mmsr-index.sqlite  the local index (unless built with ``index=False``)
    questions/<split>.jsonl    train, test-known, test-unknown, test-fresh, stream (if any)
    questions/images/<split>/  <id>-<view>.jpg: the views the questions show

The fresh world's and the stream's entities share the one corpus (one index serves every split;
a model never sees a fresh entity's picture or question in training). Each view image is shared
by the questions on all attributes of its entity; each file is in a seeded random order, so its
first N questions are a fair sample. Everything is determined by the config: the same config
writes the same bytes.
"""

from __future__ import annotations

import json
import random
import shutil
from collections import Counter
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

from tqdm import tqdm  # type: ignore[import-untyped]

from mmsr_bench.world import images as img
from mmsr_bench.world.entities import Entity
from mmsr_bench.world.pages import reference_page, web_pages
from mmsr_bench.world.plan import WorldConfig, plan_world
from mmsr_bench.world.questions import Question, write_questions

MANIFEST = "world.json"
FORMAT_VERSION = 1
OWNED = (MANIFEST, "corpus", "questions")


def splits_of(entity: Entity, config: WorldConfig) -> list[tuple[str, int]]:
    """The question splits an entity appears in, with the number of views each."""
    return {
        "known": [("train", config.train_views), ("test-known", config.test_views)],
        "unknown": [("train", config.train_views)],
        "heldout": [("test-unknown", config.test_views)],
        "fresh": [("test-fresh", config.test_views)],
        "stream": [("stream", config.stream_views)],
    }[entity.group]


def entity_questions(entity: Entity, split: str, view: int, image: str) -> Iterator[Question]:
    """One question per attribute on one view; the phrasing is drawn from the view's seed."""
    rng = random.Random(f"{entity.look}:{split}:{view}:phrasing")
    for attribute in entity.attributes:
        yield Question(
            id=f"{split}-{entity.id}-{view}-{attribute.key}",
            question=rng.choice(attribute.questions),
            answers=(entity.facts[attribute.key],),
            split=split,
            image=image,
            entity=entity.name,
            known=entity.known,
            kind=entity.kind,
            attribute=attribute.key,
            query=entity.query(attribute),
            extra={
                "category": "search_free" if entity.known else "search_required",
                "data_source": f"mmsr-world/{split}",
            },
        )


def _write_entity(
    entity: Entity, config: WorldConfig, out: Path, questions: dict[str, list[Question]]
) -> list[dict[str, Any]]:
    """Draw one entity's pictures, write its images and views; return its corpus rows."""
    master = img.draw_master(entity.look, entity.kind)
    ref = reference_page(entity)
    ref["image"] = f"images/{entity.id}.png"
    (out / "corpus" / ref["image"]).write_bytes(img.png_bytes(img.downscale(master)))
    rows = [ref]
    page_rng = random.Random(f"{entity.look}:pages")
    for page in web_pages(entity, config.web_pages, page_rng):
        page["image"] = f"images/{page['id']}.jpg"
        (out / "corpus" / page["image"]).write_bytes(img.make_view(master, page_rng, img.PAGE_VIEW))
        rows.append(page)
    for split, views in splits_of(entity, config):
        folder = out / "questions" / "images" / split
        folder.mkdir(parents=True, exist_ok=True)
        for view in range(views):
            rel = f"images/{split}/{entity.id}-{view}.jpg"
            view_rng = random.Random(f"{entity.look}:{split}:{view}:view")
            (out / "questions" / rel).write_bytes(img.make_view(master, view_rng, img.QUERY_VIEW))
            questions.setdefault(split, []).extend(entity_questions(entity, split, view, rel))
    return rows


def _prepare(out: Path, overwrite: bool) -> None:
    existing = [out / name for name in OWNED if (out / name).exists()]
    if existing and not overwrite:
        raise FileExistsError(f"{out} already holds a world ({existing[0].name}); overwrite it explicitly")
    for path in existing:
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink()
    (out / "corpus" / "images").mkdir(parents=True)


def _manifest(config: WorldConfig, world: list[Entity], counts: dict[str, int]) -> dict[str, Any]:
    return {
        "format": FORMAT_VERSION,
        "config": {**asdict(config), "fresh_seed": config.resolved_fresh_seed},
        "groups": dict(Counter(e.group for e in world)),
        "questions": counts,
        "entities": [
            {"id": e.id, "name": e.name, "kind": e.kind, "group": e.group, "facts": dict(e.facts)}
            for e in world
        ],
    }


def build_world(
    out: str | Path,
    config: WorldConfig | None = None,
    *,
    index: bool = True,
    overwrite: bool = False,
    progress: bool = False,
) -> dict[str, Any]:
    """Write the world of ``config`` under ``out`` (see the module docstring); return the manifest.

    Refuses (``FileExistsError``) to write over an earlier world unless ``overwrite``, which first
    deletes ``world.json``, ``corpus/`` and ``questions/`` (and nothing else) under ``out``.
    """
    config = config or WorldConfig()
    out = Path(out)
    _prepare(out, overwrite)
    world = plan_world(config)
    questions: dict[str, list[Question]] = {}
    rows: list[dict[str, Any]] = []
    for entity in tqdm(world, desc="drawing the world", unit="entity", disable=not progress):
        rows += _write_entity(entity, config, out, questions)
    with (out / "corpus" / "docs.jsonl").open("w", encoding="utf-8") as f:
        f.writelines(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
    counts = {}
    for split, items in questions.items():
        random.Random(f"order:{config.seed}:{split}").shuffle(items)  # the first N are a fair sample
        counts[split] = write_questions(out / "questions" / f"{split}.jsonl", items)
    manifest = _manifest(config, world, counts)
    (out / MANIFEST).write_text(json.dumps(manifest, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    if index:
        from mmsr_serve.search.local import build_index

        build_index(out / "corpus", progress=progress)
    return manifest


def load_manifest(out: str | Path) -> dict[str, Any]:
    """The ``world.json`` of a world folder."""
    manifest: dict[str, Any] = json.loads((Path(out) / MANIFEST).read_text(encoding="utf-8"))
    return manifest
