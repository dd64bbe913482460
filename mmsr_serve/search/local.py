"""The embedded search engine: a local index over a corpus folder, no network, no model weights.

A corpus folder holds ``docs.jsonl``, one JSON object per line::

    {"id": "heron", "url": "https://...", "title": "The Glass Heron", "text": "...", "image": "img/heron.jpg"}

``image`` is optional and relative to the folder. :class:`LocalIndex` answers both tools: text
search is SQLite FTS5 with BM25 (the title weighs 3x the text), returning a query-focused extract
of each document (see :mod:`._text_index`); image search finds near-duplicates of the query image
by perceptual hash (see :mod:`._image_index` for the hashes and the measured distance cut-off).

The index is one SQLite file, by default ``<corpus>/.mmsr-index.sqlite``. It records the size,
mtime and sha256 of the ``docs.jsonl`` it was built from, and is rebuilt on first use when it is
missing, was built by another index version, or ``docs.jsonl`` changed (a change to an image file
alone is not noticed: run :func:`build_index`). Building writes a temporary file next to the index
and renames it into place, so readers, in this process or another, see the old index or the new
one, never half of one. A running :class:`LocalIndex` notices a changed ``docs.jsonl`` at its next
search; while it rebuilds, other searches keep being answered from the previous index, and if the
rebuild fails (a malformed row) the previous index keeps serving.

Searches run in worker threads (``asyncio.to_thread``). Each loaded index version has one SQLite
connection, used under a lock, so all its reads see the same file even if it is replaced on disk.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sqlite3
import threading
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from mmsr_serve.errors import ConfigError, SearchError
from mmsr_serve.images import InputImage
from mmsr_serve.search import _image_index as imgidx
from mmsr_serve.search import _text_index as textidx
from mmsr_serve.search._build import (
    DEFAULT_INDEX_NAME,
    DOCS_FILE,
    Stamp,
    build_index,
    connect_readonly,
    default_index_path,
    docs_stamp,
    is_fresh,
)
from mmsr_serve.search.base import Hit, ImageHit, SearchResults, TextHit

__all__ = ["DEFAULT_INDEX_NAME", "DOCS_FILE", "LocalIndex", "build_index"]

_IMAGE_DOCS = "SELECT line, d.title, d.url, i.thumbnail FROM docs AS d JOIN images AS i USING (line)"
logger = logging.getLogger(__name__)


class _Loaded:
    """One version of the index file, open: its connection and its image hashes in memory."""

    def __init__(self, path: Path, stamp: Stamp) -> None:
        self.stamp = stamp
        self._lock = threading.Lock()
        self._conn = connect_readonly(path)
        rows = self._conn.execute("SELECT line, hashes FROM images ORDER BY line").fetchall()
        self.image_lines = np.array([line for line, _ in rows], dtype=np.int64)
        packed = np.frombuffer(b"".join(blob for _, blob in rows), dtype=np.uint8)
        self.table = imgidx.SignatureTable(
            packed.reshape(len(rows), len(imgidx.CORPUS_CROPS), imgidx.HASH_BYTES)
        )

    def query(self, sql: str, params: tuple[Any, ...]) -> list[Any]:
        with self._lock:
            return self._conn.execute(sql, params).fetchall()

    def close(self) -> None:
        with self._lock:
            self._conn.close()


def _check_k(k: int) -> None:
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")


class LocalIndex:
    """Text and image search over a corpus folder; implements both search tool protocols.

    ``max_distance`` is the largest perceptual-hash distance (out of 192 bits) still reported as
    a match; ``score`` is ``1 - distance / 192``. ``extract_chars`` bounds each text hit's extract
    (its ``score`` is the BM25 score, higher is better); ``title_weight`` is the BM25 weight of
    the title relative to the text; text hits scoring below ``min_relative_score`` times the best
    hit's score are dropped (BM25 joins the query words with ``OR``, so a page that matches only a
    common word such as ``year`` would otherwise fill the remaining places with noise).

    Call :meth:`ensure_index` at start-up to build the index and surface corpus errors
    (:class:`ConfigError`) early; a search that cannot load any index raises
    :class:`SearchError` instead, like every provider.
    """

    name = "local"

    def __init__(
        self,
        corpus_dir: str | os.PathLike[str],
        index_path: str | os.PathLike[str] | None = None,
        *,
        max_distance: int = imgidx.DEFAULT_MAX_DISTANCE,
        extract_chars: int = textidx.DEFAULT_EXTRACT_CHARS,
        title_weight: float = 3.0,
        min_relative_score: float = textidx.DEFAULT_MIN_RELATIVE_SCORE,
    ) -> None:
        if not 0.0 <= min_relative_score <= 1.0:
            raise ConfigError(f"min_relative_score must be within [0, 1], not {min_relative_score}")
        if title_weight <= 0:
            raise ConfigError(f"title_weight must be positive, not {title_weight}")
        self.corpus_dir = Path(corpus_dir)
        self.index_path = default_index_path(self.corpus_dir, index_path)
        self.max_distance = max_distance
        self.extract_chars = extract_chars
        self.title_weight = title_weight
        self.min_relative_score = min_relative_score
        self._docs_path = self.corpus_dir / DOCS_FILE
        self._lock = threading.Lock()  # held while (re)building or loading
        self._loaded: _Loaded | None = None
        self._failed: tuple[Stamp, str] | None = None  # a docs.jsonl version that failed to index

    def ensure_index(self) -> Path:
        """Build the index if missing or stale, and load it. Raises :class:`ConfigError`.

        When the corpus has images, the image hashing runs once too: its imports (SciPy's DCT)
        take a few hundred milliseconds that the first image search would otherwise pay.
        """
        if len(self._current(wait=True).image_lines):
            imgidx.warm()
        return self.index_path

    def close(self) -> None:
        loaded, self._loaded = self._loaded, None
        if loaded is not None:
            loaded.close()

    def _current(self, *, wait: bool) -> _Loaded:
        """The loaded index for the current docs.jsonl, (re)building it first if needed.

        Without ``wait``, a caller that finds another thread re-indexing, or a docs.jsonl whose
        indexing already failed, gets the previous index when there is one.
        """
        stamp = docs_stamp(self._docs_path)
        loaded = self._loaded
        if loaded is not None and loaded.stamp == stamp:
            return loaded
        if not self._lock.acquire(blocking=wait or loaded is None):
            assert loaded is not None
            return loaded
        try:
            loaded = self._loaded
            if loaded is not None and loaded.stamp == stamp:
                return loaded
            if not wait and self._failed is not None and self._failed[0] == stamp:
                if loaded is not None:
                    return loaded
                raise ConfigError(self._failed[1])
            try:
                if not is_fresh(self.index_path, self._docs_path):
                    build_index(self.corpus_dir, self.index_path, progress=False)
                self._loaded = _Loaded(self.index_path, stamp)
            except sqlite3.Error as exc:
                self._failed = (stamp, f"cannot open the index {self.index_path}: {exc}")
                raise ConfigError(self._failed[1]) from exc
            except ConfigError as exc:
                self._failed = (stamp, str(exc))
                if loaded is not None and not wait:
                    logger.warning(
                        "re-indexing %s failed, serving the previous index: %s", self.corpus_dir, exc
                    )
                    return loaded
                raise
            return self._loaded
        finally:
            self._lock.release()

    def _for_search(self) -> _Loaded:
        try:
            return self._current(wait=False)
        except ConfigError as exc:
            if self._loaded is not None:
                return self._loaded
            raise SearchError(f"the local index is unavailable: {exc}") from exc

    async def search_text(self, query: str, k: int = 5) -> SearchResults:
        _check_k(k)
        words = textidx.query_words(query)
        if not words:
            raise SearchError("the text search query has no searchable words")
        hits = await asyncio.to_thread(self._search_text, words, k)
        return SearchResults(hits=hits, provider=self.name)

    def _search_text(self, words: list[str], k: int) -> list[Hit]:
        loaded = self._for_search()
        try:
            rows = loaded.query(textidx.SEARCH, (self.title_weight, textidx.fts_match(words), k))
        except sqlite3.Error as exc:
            raise SearchError(f"local text search failed: {exc}") from exc
        floor = -rows[0][3] * self.min_relative_score if rows else 0.0
        return [
            TextHit(title, url, textidx.extract(text, words, self.extract_chars), score=-rank)
            for title, url, text, rank in rows
            if -rank >= floor
        ]

    async def search_image(self, image: InputImage, k: int = 5) -> SearchResults:
        _check_k(k)
        hits = await asyncio.to_thread(self._search_image, image.image, k)
        return SearchResults(hits=hits, provider=self.name)

    def _search_image(self, image: Image.Image, k: int) -> list[Hit]:
        loaded = self._for_search()
        if len(loaded.image_lines) == 0:
            return []
        dist = loaded.table.min_distances(imgidx.signatures(image, imgidx.QUERY_CROPS))
        top = np.argsort(dist, kind="stable") if k >= len(dist) else np.argpartition(dist, k)[:k]
        best = sorted((int(dist[i]), int(loaded.image_lines[i])) for i in top if dist[i] <= self.max_distance)
        if not best:
            return []
        marks = ",".join("?" * len(best))
        try:
            rows = loaded.query(f"{_IMAGE_DOCS} WHERE line IN ({marks})", tuple(line for _, line in best))
        except sqlite3.Error as exc:
            raise SearchError(f"local image search failed: {exc}") from exc
        docs = {line: (title, url, thumb) for line, title, url, thumb in rows}
        return [
            ImageHit(*docs[line], score=round(1 - d / imgidx.HASH_BITS, 4))
            for d, line in best
            if line in docs
        ]
