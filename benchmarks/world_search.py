"""How well the local index finds a generated world's entities: the figures in docs/world.md.

    python benchmarks/world_search.py [WORLD_DIR] [--seed 0] [--entities 80] [--stream 0]

Builds the world first when WORLD_DIR has none (a temporary folder without WORLD_DIR). Reports,
over every distinct question image of every split, how often image search ranks one of the
pictured entity's pages first; over every distinct gold query (``<name> <attribute>``), how often
text search ranks the entity's reference page first and its extract shows the answer; and the
distance margins of the image search.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from collections import defaultdict
from pathlib import Path

from mmsr_bench.world import WorldConfig, build_world, read_questions
from mmsr_bench.world.build import MANIFEST
from mmsr_bench.world.questions import Question
from mmsr_serve.images import load_image
from mmsr_serve.search.local import LocalIndex


def _owner(url: str) -> str:
    return url.rstrip("/").rsplit("/", 1)[-1]


async def image_rank1(index: LocalIndex, questions: list[Question]) -> dict[str, tuple[int, int]]:
    """Per split: (images whose top hit is the pictured entity's page, images)."""
    seen: dict[str, tuple[str, str]] = {}
    for q in questions:
        if q.image:
            seen[q.image] = (q.split, q.entity.lower())
    tally: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for path, (split, entity) in seen.items():
        hits = (await index.search_image(await load_image(path), 5)).hits
        tally[split][0] += bool(hits) and _owner(hits[0].url) == entity
        tally[split][1] += 1
    return {split: (ok, n) for split, (ok, n) in tally.items()}


async def text_rank1(index: LocalIndex, questions: list[Question]) -> tuple[int, int, int]:
    """(queries whose top hit is the reference page, ... whose top extract holds the answer, queries)."""
    queries = {q.query: (q.entity.lower(), q.answers[0]) for q in questions if q.query}
    first = shown = 0
    for query, (entity, answer) in queries.items():
        hits = (await index.search_text(query, 5)).hits
        top = hits[0] if hits else None
        first += top is not None and top.url.endswith(f"/{entity}") and top.title.lower() == entity
        shown += top is not None and answer in getattr(top, "text", "")
    return first, shown, len(queries)


async def measure(world: Path) -> None:
    questions = [q for path in sorted((world / "questions").glob("*.jsonl")) for q in read_questions(path)]
    index = LocalIndex(world / "corpus")
    start = time.perf_counter()
    index.ensure_index()
    print(f"index ready in {time.perf_counter() - start:.1f} s")
    start = time.perf_counter()
    images = await image_rank1(index, questions)
    n_images = sum(n for _, n in images.values())
    print(f"image search: {(time.perf_counter() - start) / max(1, n_images) * 1000:.1f} ms per query")
    for split, (ok, n) in sorted(images.items()):
        print(f"  {split:13s} rank-1 {ok}/{n} = {ok / n:.2%}")
    total_ok = sum(ok for ok, _ in images.values())
    print(f"  all           rank-1 {total_ok}/{n_images} = {total_ok / max(1, n_images):.2%}")
    first, shown, n = await text_rank1(index, questions)
    print(f"text search: reference page first {first}/{n} = {first / n:.2%}")
    print(f"             answer in the top hit's extract {shown}/{n} = {shown / n:.2%}")
    index.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("world", nargs="?", type=Path)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--entities", type=int, default=80)
    parser.add_argument("--stream", type=int, default=0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        world = args.world or Path(tmp) / "world"
        if not (world / MANIFEST).exists():
            config = WorldConfig(seed=args.seed, entities=args.entities, stream=args.stream)
            build_world(world, config, index=False, progress=True)
        asyncio.run(measure(world))


if __name__ == "__main__":
    main()
