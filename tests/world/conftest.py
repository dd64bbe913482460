"""A small world, built once for the tests of this folder: 24 main entities (12 known, 6 unknown,
6 held out), 8 fresh ones, 8 stream ones; 2 views each in train and test, index built."""

from __future__ import annotations

from pathlib import Path

import pytest

from mmsr_bench.world import WorldConfig, build_world

SMALL = WorldConfig(seed=3, entities=24, fresh_entities=8, stream=8, train_views=2, test_views=2)


@pytest.fixture(scope="package")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("world")
    build_world(out, SMALL)
    return out
