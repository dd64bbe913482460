"""Fixtures shared by every test folder.

``corpus_dir``: a fresh corpus folder (``docs.jsonl`` + PNG images) in the test's tmp dir: a copy
of what :func:`tests.corpus_fixture.make_corpus` writes with its defaults (``default_corpus``, drawn
once a session), 12 documents, images for 9 of them (every document whose index % 4 != 3). Read its
rows with :func:`tests.corpus_fixture.read_docs`; make a realistic query image with
:func:`tests.corpus_fixture.variant`. The index is not built: the first search (or
``LocalIndex.ensure_index()``) builds it, in well under a second.

``local_index``: a :class:`~mmsr_serve.search.local.LocalIndex` over ``corpus_dir``, built (a copy
of the session's index of ``default_corpus``, which it finds up to date).

``standin``: the stand-in web providers (:mod:`tests.search.standins`) on loopback, one server per
session (starting and stopping uvicorn costs ~0.2 s), with a clean record and script for each test.

``tiny``: one tiny random Qwen2.5-VL checkpoint folder per session
(:func:`mmsr_train.tiny_model.build_tiny_qwen2_5_vl` with its defaults), shared by the backend,
serving and training tests. Treat it as read-only: tests write what they train elsewhere.

Tests marked ``slow`` (end-to-end training, world builds, subprocess clients and servers) are left
out of a plain ``pytest -q``; ``pytest -q -m "slow or not slow"`` runs everything (what CI runs).
"""

from __future__ import annotations

import gc
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from mmsr_serve.search.local import DEFAULT_INDEX_NAME, LocalIndex, build_index
from tests.api.live import serve_in_thread
from tests.corpus_fixture import DefaultCorpus, copy_corpus, make_corpus
from tests.search.standins import StandIn


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config: pytest.Config) -> None:
    """Skip the garbage collection of the whole heap at interpreter exit (~3 s once torch and
    transformers are loaded): everything is reported by now, pytest's own last collection (for
    unraisable exceptions) included, since it runs in an earlier ``pytest_unconfigure``."""
    gc.freeze()


@pytest.fixture(scope="session")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from mmsr_train.tiny_model import build_tiny_qwen2_5_vl

    return build_tiny_qwen2_5_vl(tmp_path_factory.mktemp("tiny"))


@pytest.fixture(scope="session")
def default_corpus(tmp_path_factory: pytest.TempPathFactory) -> DefaultCorpus:
    """The default corpus and its index, made once per session (drawing takes ~0.1 s, indexing
    ~0.2 s). Read-only: ``corpus_dir`` and ``local_index`` hand out copies (:func:`copy_corpus`)."""
    root = make_corpus(tmp_path_factory.mktemp("default-corpus") / "corpus")
    index = build_index(root, tmp_path_factory.mktemp("default-index") / DEFAULT_INDEX_NAME, progress=False)
    return DefaultCorpus(root, index)


@pytest.fixture
def corpus_dir(tmp_path: Path, default_corpus: DefaultCorpus) -> Path:
    return copy_corpus(default_corpus.root, tmp_path / "corpus")


@pytest.fixture
def local_index(corpus_dir: Path, default_corpus: DefaultCorpus) -> Iterator[LocalIndex]:
    shutil.copyfile(default_corpus.index, corpus_dir / DEFAULT_INDEX_NAME)  # same docs: no rebuild
    index = LocalIndex(corpus_dir)
    index.ensure_index()
    yield index
    index.close()


@pytest.fixture(scope="session")
def standin_server() -> Iterator[StandIn]:
    state = StandIn()
    with serve_in_thread(state.app) as live:
        state.base = live.url
        yield state


@pytest.fixture
def standin(standin_server: StandIn) -> StandIn:
    """The stand-in providers (one server per session), with a clean record and script."""
    standin_server.requests.clear()
    standin_server.script.clear()
    standin_server.lens_images.clear()
    standin_server.on_lens_url = None
    return standin_server
