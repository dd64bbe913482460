"""Fixtures shared by every test folder.

``corpus_dir``: a fresh corpus folder (``docs.jsonl`` + PNG images) in the test's tmp dir, written
by :func:`tests.corpus_fixture.make_corpus` with its defaults: 12 documents, images for 9 of them
(every document whose index % 4 != 3). Read its rows with :func:`tests.corpus_fixture.read_docs`;
make a realistic query image with :func:`tests.corpus_fixture.variant`. The index is not built:
the first search (or ``LocalIndex.ensure_index()``) builds it, in well under a second.

``local_index``: a :class:`~mmsr_serve.search.local.LocalIndex` over ``corpus_dir``, built.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from mmsr_serve.search.local import LocalIndex
from tests.corpus_fixture import make_corpus


@pytest.fixture
def corpus_dir(tmp_path: Path) -> Path:
    return make_corpus(tmp_path / "corpus")


@pytest.fixture
def local_index(corpus_dir: Path) -> Iterator[LocalIndex]:
    index = LocalIndex(corpus_dir)
    index.ensure_index()
    yield index
    index.close()
