"""LocalIndex: text search (FTS5/BM25 + extracts), image search (perceptual hashes), index life."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from mmsr_serve.errors import ConfigError, SearchError
from mmsr_serve.images import InputImage, encode_image, load_image
from mmsr_serve.search.base import ImageHit, ImageSearchTool, TextHit, TextSearchTool
from mmsr_serve.search.local import DEFAULT_INDEX_NAME, LocalIndex, build_index
from tests.corpus_fixture import DefaultCorpus, copy_corpus, draw_image, read_docs, variant


@pytest.fixture(scope="module")
def shared_corpus(tmp_path_factory: pytest.TempPathFactory, default_corpus: DefaultCorpus) -> Path:
    """One corpus, indexed, for the read-only tests of this module (the session's, copied once)."""
    root = copy_corpus(default_corpus.root, tmp_path_factory.mktemp("shared") / "corpus")
    shutil.copyfile(default_corpus.index, root / DEFAULT_INDEX_NAME)
    return root


@pytest.fixture
def index(shared_corpus: Path) -> Iterator[LocalIndex]:
    idx = LocalIndex(shared_corpus)
    yield idx
    idx.close()


async def _query_image(img: Image.Image) -> InputImage:
    return await load_image(encode_image(img, "JPEG"))


def _write_docs(root: Path, rows: list[Any]) -> None:
    root.mkdir(parents=True, exist_ok=True)
    lines = [row if isinstance(row, str) else json.dumps(row) for row in rows]
    (root / "docs.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")


def _leftovers(root: Path) -> list[Path]:
    """Temporary files a build left behind."""
    return list(root.glob("*.tmp"))


def test_implements_both_tools(index: LocalIndex) -> None:
    assert isinstance(index, ImageSearchTool) and isinstance(index, TextSearchTool)
    assert index.name == "local"


# --- text search ---------------------------------------------------------------------------


async def test_key_terms_rank_their_document_first(index: LocalIndex, shared_corpus: Path) -> None:
    for doc in read_docs(shared_corpus):
        _, material, creature, _, place = doc["title"].split()
        results = await index.search_text(f"{material} {creature} of {place}", 5)
        assert results.hits[0].url == doc["url"], doc["title"]
        assert results.provider == "local" and not results.cached


async def test_a_fact_in_the_text_finds_its_document_with_a_focused_extract(
    index: LocalIndex, shared_corpus: Path
) -> None:
    doc = read_docs(shared_corpus)[4]
    designer = doc["text"].split("designed by ")[1].split(" and")[0]
    results = await index.search_text(f"Who is {designer}?", 3)
    hit = results.hits[0]
    assert isinstance(hit, TextHit) and hit.url == doc["url"] and hit.title == doc["title"]
    assert f"designed by {designer}" in hit.text
    assert hit.score is not None and hit.score > 0
    # the sentences about restoration and visitors do not mention the designer
    assert "Visitors" not in hit.text


async def test_extract_is_bounded_and_keeps_document_order(shared_corpus: Path) -> None:
    doc = read_docs(shared_corpus)[0]
    idx = LocalIndex(shared_corpus, extract_chars=120)
    year = doc["text"].split("made in ")[1][:4]
    hit = (await idx.search_text(f"{doc['title']} visitors photograph gallery {year}", 1)).hits[0]
    assert isinstance(hit, TextHit)
    assert len(hit.text) <= 123
    sentences = [s for s in doc["text"].split(". ") if s.rstrip(".") in hit.text]
    assert sentences, hit.text
    positions = [hit.text.index(s.rstrip(".")) for s in sentences]
    assert positions == sorted(positions)
    idx.close()


async def test_k_bounds_the_hits(index: LocalIndex) -> None:
    results = await index.search_text("designed metres landmark", 2)
    assert len(results.hits) == 2
    with pytest.raises(ValueError):
        await index.search_text("heron", 0)


async def test_hits_far_below_the_best_are_dropped(tmp_path: Path) -> None:
    """BM25 ORs the query words: pages sharing only a common word with the query are noise."""
    root = tmp_path / "c"
    rows = [{"id": "bamoti", "url": "https://w.example/bamoti", "title": "Bamoti", "text": "year: 1843"}]
    rows += [
        {"id": f"d{i}", "url": f"https://w.example/d{i}", "title": f"Doc {i}", "text": f"year: 19{i:02d}"}
        for i in range(6)
    ]
    _write_docs(root, rows)
    idx = LocalIndex(root)
    hits = (await idx.search_text("Bamoti year", 5)).hits
    assert [h.url for h in hits] == ["https://w.example/bamoti"]
    assert len((await idx.search_text("year", 5)).hits) == 5  # equally good hits all stay
    idx.close()
    every = LocalIndex(root, min_relative_score=0.0)
    assert len((await every.search_text("Bamoti year", 5)).hits) == 5
    every.close()
    with pytest.raises(ConfigError):
        LocalIndex(root, min_relative_score=1.5)


HOSTILE = [
    '"',
    '""',
    "AND OR NOT",
    "*",
    "title:",
    "title:glass*",
    "NEAR(glass heron)",
    '"unbalanced quote',
    "heron' OR 1=1; DROP TABLE docs; --",
    "-heron +stag ^glass",
    "(((",
    "🦩🦢",
    "café naïve 東京",
    "\x00\x1f",
    "",
    "   \n\t",
    "x" * 5000,
    " ".join(["glass"] * 500),
]


@pytest.mark.parametrize("query", HOSTILE)
async def test_hostile_queries_never_crash(index: LocalIndex, query: str) -> None:
    try:
        results = await index.search_text(query, 5)
    except SearchError as exc:
        assert "no searchable words" in str(exc)
    else:
        assert all(isinstance(hit, TextHit) for hit in results.hits)


async def test_operators_are_searched_as_words(index: LocalIndex, shared_corpus: Path) -> None:
    doc = read_docs(shared_corpus)[2]
    _, material, creature, _, _ = doc["title"].split()
    results = await index.search_text(f'title:"{material}" AND {creature}* NOT', 3)
    assert results.hits[0].url == doc["url"]


async def test_accents_and_plural_forms_match(tmp_path: Path) -> None:
    root = tmp_path / "c"
    _write_docs(
        root,
        [
            {"id": "a", "url": "https://a.example", "title": "Café Müller", "text": "Herons on the Straße."},
            {"id": "b", "url": "https://b.example", "title": "Other", "text": "Nothing to see here."},
        ],
    )
    idx = LocalIndex(root)
    assert (await idx.search_text("cafe muller", 5)).hits[0].url == "https://a.example"
    assert (await idx.search_text("heron", 5)).hits[0].url == "https://a.example"
    assert (await idx.search_text("STRASSE straße", 5)).hits[0].url == "https://a.example"
    # a corpus without images answers image searches with no hits
    assert (await idx.search_image(await _query_image(draw_image(1)), 5)).hits == []
    idx.close()


# --- image search --------------------------------------------------------------------------


@pytest.mark.parametrize("crop", [0.05, 0.10])
async def test_every_image_is_found_from_a_cropped_resized_jpeg_copy(
    index: LocalIndex, shared_corpus: Path, crop: float
) -> None:
    docs = [d for d in read_docs(shared_corpus) if "image" in d]
    assert len(docs) == 9
    for n, doc in enumerate(docs):
        with Image.open(shared_corpus / doc["image"]) as original:
            copy = variant(original.convert("RGB"), crop=crop, scale=0.6 + 0.05 * n, quality=70, seed=n)
        results = await index.search_image(await _query_image(copy), 5)
        assert results.hits and results.hits[0].url == doc["url"], doc["id"]
        hit = results.hits[0]
        assert isinstance(hit, ImageHit) and hit.title == doc["title"]
        assert hit.score is not None and 0.8 < hit.score <= 1
        thumb = hit.thumbnail_image()
        assert thumb is not None and max(thumb.size) <= 256


async def test_unrelated_images_return_nothing(index: LocalIndex) -> None:
    noise = Image.fromarray(np.random.default_rng(0).integers(0, 255, (240, 320, 3), dtype=np.uint8))
    for img in (noise, draw_image(987654), Image.new("RGB", (300, 200), (200, 30, 30))):
        assert (await index.search_image(await _query_image(img), 5)).hits == []


async def test_the_cut_off_is_configurable(shared_corpus: Path) -> None:
    idx = LocalIndex(shared_corpus, max_distance=192)
    results = await idx.search_image(await _query_image(draw_image(987654)), 4)
    assert len(results.hits) == 4
    scores = [h.score or 0.0 for h in results.hits]
    assert scores == sorted(scores, reverse=True)
    idx.close()


async def test_concurrent_mixed_searches(index: LocalIndex, shared_corpus: Path) -> None:
    docs = read_docs(shared_corpus)
    with Image.open(shared_corpus / docs[0]["image"]) as original:
        query = await _query_image(variant(original.convert("RGB")))
    calls = [index.search_text(d["title"], 3) for d in docs] + [index.search_image(query, 3)] * 8
    results = await asyncio.gather(*calls)
    assert [r.hits[0].url for r in results[: len(docs)]] == [d["url"] for d in docs]
    assert {r.hits[0].url for r in results[len(docs) :]} == {docs[0]["url"]}


# --- the index file ------------------------------------------------------------------------


async def test_builds_on_first_use_and_rebuilds_when_docs_change(corpus_dir: Path) -> None:
    index_file = corpus_dir / DEFAULT_INDEX_NAME
    assert not index_file.exists()
    idx = LocalIndex(corpus_dir)
    assert (await idx.search_text("Zebra Lighthouse", 5)).hits == []
    assert index_file.is_file()
    first_build = index_file.stat().st_ino

    os.utime(corpus_dir / "docs.jsonl")  # touched, same contents: no rebuild
    await idx.search_text("metres", 1)
    assert index_file.stat().st_ino == first_build

    new = {"id": "new", "url": "https://new.example", "title": "The Zebra Lighthouse", "text": "Tall."}
    with (corpus_dir / "docs.jsonl").open("a", encoding="utf-8") as f:
        f.write(json.dumps(new) + "\n")
    assert (await idx.search_text("Zebra Lighthouse", 5)).hits[0].url == "https://new.example"
    assert index_file.stat().st_ino != first_build
    assert (await LocalIndex(corpus_dir).search_text("zebra", 1)).hits[0].url == "https://new.example"
    assert _leftovers(corpus_dir) == []
    idx.close()


async def test_custom_index_path(corpus_dir: Path, tmp_path: Path) -> None:
    target = tmp_path / "elsewhere" / "idx.sqlite"
    assert build_index(corpus_dir, target, progress=False) == target
    idx = LocalIndex(corpus_dir, target)
    assert idx.ensure_index() == target
    assert not (corpus_dir / DEFAULT_INDEX_NAME).exists()
    idx.close()


async def test_a_reader_keeps_its_index_while_it_is_rebuilt(corpus_dir: Path) -> None:
    idx = LocalIndex(corpus_dir)
    idx.ensure_index()
    build_index(corpus_dir, progress=False)  # replaces the file under the open reader
    docs = read_docs(corpus_dir)
    assert (await idx.search_text(docs[1]["title"], 1)).hits[0].url == docs[1]["url"]
    idx.close()


def test_progress_bar(corpus_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    build_index(corpus_dir, progress=True)
    assert "indexing" in capsys.readouterr().err


GOOD = {"id": "x", "url": "https://x.example", "title": "X", "text": "x"}
MALFORMED = [
    ("{not json", "invalid JSON"),
    ('["a", "list"]', "expected a JSON object"),
    ({**GOOD, "title": ""}, '"title"'),
    ({k: v for k, v in GOOD.items() if k != "url"}, '"url"'),
    ({**GOOD, "id": None}, '"id"'),
    ({**GOOD, "text": 3}, '"text"'),
    ({**GOOD, "image": "../outside.png"}, '"image"'),
    ({**GOOD, "image": "/etc/hostname"}, '"image"'),
    ({**GOOD, "image": "missing.png"}, '"image"'),
    ({**GOOD, "image": "broken.png"}, '"image"'),
    ({**GOOD, "id": "a"}, "duplicate id 'a' (first on line 1)"),
]


@pytest.mark.parametrize(("row", "message"), MALFORMED)
def test_malformed_rows_name_their_line(tmp_path: Path, row: Any, message: str) -> None:
    root = tmp_path / "c"
    _write_docs(root, [{**GOOD, "id": "a"}, "", row])
    (root / "broken.png").write_bytes(b"not a png")
    with pytest.raises(ConfigError) as err:
        build_index(root, progress=False)
    assert "line 3" in str(err.value) and message in str(err.value)
    assert _leftovers(root) == [] and not (root / DEFAULT_INDEX_NAME).exists()


async def test_a_broken_corpus_fails_searches_not_the_caller(tmp_path: Path) -> None:
    root = tmp_path / "c"
    _write_docs(root, [GOOD, "{oops"])
    idx = LocalIndex(root)
    with pytest.raises(ConfigError, match="line 2"):
        idx.ensure_index()
    with pytest.raises(SearchError, match="line 2"):
        await idx.search_text("x", 1)
    with pytest.raises(SearchError, match="No such file"):
        await LocalIndex(tmp_path / "nowhere").search_text("x", 1)


async def test_a_failed_rebuild_keeps_serving_the_previous_index(corpus_dir: Path) -> None:
    idx = LocalIndex(corpus_dir)
    doc = read_docs(corpus_dir)[0]
    assert (await idx.search_text(doc["title"], 1)).hits[0].url == doc["url"]
    with (corpus_dir / "docs.jsonl").open("a", encoding="utf-8") as f:
        f.write('{"id": 1}\n')
    assert (await idx.search_text(doc["title"], 1)).hits[0].url == doc["url"]
    with pytest.raises(ConfigError, match='line 13: field "url"'):
        idx.ensure_index()
    idx.close()


def test_the_signature_scan_is_the_smallest_hamming_distance_over_all_crop_pairs() -> None:
    import numpy as np

    from mmsr_serve.search import _image_index as ix

    rng = np.random.default_rng(3)
    corpus = rng.integers(0, 256, (ix._SCAN_CHUNK + 37, 4, ix.HASH_BYTES), dtype=np.uint8)  # two blocks
    query = rng.integers(0, 256, (3, ix.HASH_BYTES), dtype=np.uint8)
    corpus[5, 2] = query[1]  # an exact copy under one crop
    bits = np.unpackbits(corpus, axis=-1).astype(np.int64)  # (N, crops, 192)
    qbits = np.unpackbits(query, axis=-1).astype(np.int64)  # (Q, 192)
    expected = np.abs(bits[:, :, None, :] - qbits[None, None, :, :]).sum(axis=-1).min(axis=(1, 2))
    found = ix.SignatureTable(corpus).min_distances(query)
    assert found.dtype == np.int64 and (found == expected).all() and found[5] == 0
    assert (ix.min_distances(query, corpus) == expected).all()


async def test_a_thumbnail_found_again_is_decoded_once(index: LocalIndex, shared_corpus: Path) -> None:
    """Every search that finds the same picture shares its decoded thumbnail (the results turn
    decodes each hit's thumbnail); a hit whose bytes are not an image has none."""
    doc = next(d for d in read_docs(shared_corpus) if "image" in d)
    with Image.open(shared_corpus / doc["image"]) as original:
        query = await _query_image(original.convert("RGB"))
    first, again = [(await index.search_image(query, 5)).hits[0] for _ in range(2)]
    assert isinstance(first, ImageHit) and isinstance(again, ImageHit)
    decoded = first.decoded_thumbnail()
    assert decoded is not None and again.decoded_thumbnail() is decoded
    assert ImageHit("t", "u", b"not an image").decoded_thumbnail() is None
