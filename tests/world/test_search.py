"""The local index finds a world's entities: from every question view by image, by name + field by text."""

from __future__ import annotations

from pathlib import Path

import pytest

from mmsr_bench.world import read_questions
from mmsr_bench.world.questions import Question
from mmsr_serve.images import load_image
from mmsr_serve.search.base import TextHit
from mmsr_serve.search.local import LocalIndex

pytestmark = pytest.mark.slow  # every test here builds a world first


@pytest.fixture(scope="module")
def questions(world: Path) -> list[Question]:
    return [q for path in sorted((world / "questions").glob("*.jsonl")) for q in read_questions(path)]


async def test_image_search_ranks_the_pictured_entity_first(world: Path, questions: list[Question]) -> None:
    index = LocalIndex(world / "corpus")
    views = {q.image: q.entity.lower() for q in questions if q.image}
    first = 0
    for path, entity in views.items():
        hits = (await index.search_image(await load_image(path), 5)).hits
        first += bool(hits) and hits[0].url.endswith(f"/{entity}")
        # every hit that is the entity's own page names it in its title
        assert all(h.title.lower().startswith(entity) for h in hits if h.url.endswith(f"/{entity}"))
    index.close()
    # measured on 1,640 views of a 1,100-entity world: 100% (docs/world.md)
    assert first / len(views) >= 0.98, f"{first}/{len(views)}"


async def test_text_search_for_name_and_field_shows_the_fact_first(
    world: Path, questions: list[Question]
) -> None:
    index = LocalIndex(world / "corpus")
    queries = {q.query: q for q in questions}
    for query, q in queries.items():
        top = (await index.search_text(query, 5)).hits[0]
        assert isinstance(top, TextHit)
        assert top.url == f"https://wiki.example/{q.entity.lower()}", query
        assert f"{q.attribute}: {q.answers[0]}" in top.text and f"name: {q.entity}" in top.text
    index.close()
