"""Fixtures for the training tests: the session's tiny checkpoint's processor and a fixture corpus.

``tiny`` (tests/conftest.py): the session's tiny random Qwen2.5-VL folder
(:func:`mmsr_train.tiny_model.build_tiny_qwen2_5_vl`). ``processor``: its processor.
``corpus`` / ``index``: the fixture corpus of :mod:`tests.corpus_fixture` (a copy of the session's
``default_corpus``, index included) and its :class:`~mmsr_serve.search.local.LocalIndex`.
``question_image``: a cropped, re-encoded copy of the first document's image, which image search
finds. ``scripted_turns``: a valid image search -> text search -> answer trajectory about it.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from mmsr_serve.search.local import DEFAULT_INDEX_NAME, LocalIndex
from tests.corpus_fixture import DefaultCorpus, copy_corpus, read_docs, variant

pytest.importorskip("trl")
os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")


@pytest.fixture(scope="session")
def processor(tiny: Path) -> Any:
    from mmsr_serve.backends.hf_core import load_processor

    return load_processor(tiny)


@pytest.fixture(scope="session")
def corpus(tmp_path_factory: pytest.TempPathFactory, default_corpus: DefaultCorpus) -> Path:
    root = copy_corpus(default_corpus.root, tmp_path_factory.mktemp("train-corpus") / "corpus")
    shutil.copyfile(default_corpus.index, root / DEFAULT_INDEX_NAME)  # built once a session
    return root


@pytest.fixture(scope="session")
def index(corpus: Path) -> Iterator[LocalIndex]:
    local = LocalIndex(corpus)
    local.ensure_index()
    yield local
    local.close()


@pytest.fixture(scope="session")
def doc(corpus: Path) -> dict[str, Any]:
    return read_docs(corpus)[0]


@pytest.fixture(scope="session")
def question_image(corpus: Path, doc: dict[str, Any]) -> Image.Image:
    with Image.open(corpus / doc["image"]) as image:
        return variant(image)


@pytest.fixture(scope="session")
def designer(doc: dict[str, Any]) -> str:
    return str(doc["text"].split("designed by ")[1].split(" and")[0])


@pytest.fixture(scope="session")
def scripted_turns(doc: dict[str, Any], designer: str) -> list[str]:
    return [
        "<reason>I do not know this object.</reason><search><img></search>",
        f"<reason>It is {doc['title']}.</reason><text_search>{doc['title']} designer</text_search>",
        f"<reason>The page names the designer.</reason><answer>{designer}</answer>",
    ]
