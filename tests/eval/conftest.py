"""A tiny world for the evaluation tests (4 known, 2 held-out and 4 fresh entities, one view each:
30 test questions) and the oracle policy that plays it (see :mod:`tests.eval.oracle`)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from mmsr_bench.world import WorldConfig, build_world, read_questions
from mmsr_bench.world.questions import Question
from mmsr_serve.search.local import LocalIndex
from tests.eval.oracle import WorldOracle

CONFIG = WorldConfig(seed=11, entities=8, fresh_entities=4, train_views=1, test_views=1)
TEST_SPLITS = ("test-known", "test-unknown", "test-fresh")


@pytest.fixture(scope="package")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("eval-world")
    build_world(out, CONFIG)
    return out


@pytest.fixture(scope="package")
def question_files(world: Path) -> list[Path]:
    return [world / "questions" / f"{split}.jsonl" for split in TEST_SPLITS]


@pytest.fixture(scope="package")
def questions(question_files: list[Path]) -> list[Question]:
    return [q for path in question_files for q in read_questions(path)]


@pytest.fixture
def oracle(questions: list[Question]) -> WorldOracle:
    return WorldOracle(questions)


@pytest.fixture
def index(world: Path) -> Iterator[LocalIndex]:
    idx = LocalIndex(world / "corpus")
    yield idx
    idx.close()
