"""Building the local index file from a corpus folder, and telling whether it is up to date.

The index is one SQLite file: ``docs`` (one row per document, keyed by its line number in
``docs.jsonl``, so errors can name the line), ``docs_fts`` (FTS5 over title and text), ``images``
(packed perceptual hashes and a JPEG thumbnail per document image) and ``meta`` (the index version
and the size, mtime and sha256 of the ``docs.jsonl`` it was built from).

Rows are validated as they stream in; the first malformed one raises :class:`ConfigError` naming
its line and field. The file is written under a temporary name next to the target and renamed
into place (atomic on POSIX), so no reader ever opens half an index.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import tempfile
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from PIL import Image, UnidentifiedImageError
from tqdm import tqdm  # type: ignore[import-untyped]

from mmsr_serve.errors import ConfigError
from mmsr_serve.search import _image_index as imgidx
from mmsr_serve.search import _text_index as textidx

DOCS_FILE = "docs.jsonl"
DEFAULT_INDEX_NAME = ".mmsr-index.sqlite"
# Bump when the schema, the tokenizer or the hash crops change: older index files then rebuild.
INDEX_VERSION = "1"
_STRUCTURE = """
CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE images(line INTEGER PRIMARY KEY, hashes BLOB NOT NULL, thumbnail BLOB NOT NULL);
"""
_IMAGE_ERRORS = (OSError, ValueError, UnidentifiedImageError, Image.DecompressionBombError)

Stamp = tuple[int, int]  # size and mtime (ns) of docs.jsonl


@dataclass(frozen=True)
class _Doc:
    line: int
    id: str
    url: str
    title: str
    text: str
    image: Path | None


def docs_stamp(docs_path: Path) -> Stamp:
    try:
        st = docs_path.stat()
    except OSError as exc:
        raise ConfigError(f"cannot read the corpus file {docs_path}: {exc.strerror}") from exc
    return st.st_size, st.st_mtime_ns


def _parse_doc(raw: bytes, line: int, docs_path: Path) -> _Doc | None:
    """Validate one line of docs.jsonl; ``None`` for a blank line."""
    where = f"{docs_path} line {line}"
    try:
        obj: Any = json.loads(raw)
    except UnicodeDecodeError:
        raise ConfigError(f"{where}: not valid UTF-8") from None
    except json.JSONDecodeError as exc:
        if not raw.strip():
            return None
        raise ConfigError(f"{where}: invalid JSON ({exc.msg})") from None
    if not isinstance(obj, dict):
        raise ConfigError(f"{where}: expected a JSON object, got {type(obj).__name__}")
    if isinstance(obj.get("id"), int) and not isinstance(obj["id"], bool):
        obj["id"] = str(obj["id"])
    for name in ("id", "url", "title"):
        if not isinstance(obj.get(name), str) or not obj[name].strip():
            raise ConfigError(f'{where}: field "{name}" must be a non-empty string')
    if not isinstance(obj.get("text"), str):
        raise ConfigError(f'{where}: field "text" must be a string')
    image = obj.get("image")
    if image is not None:
        if not isinstance(image, str) or not image.strip():
            raise ConfigError(f'{where}: field "image" must be a path relative to the corpus folder')
        relative = Path(os.path.normpath(image))  # lexically: symlinks placed by the owner are fine
        if relative.is_absolute() or relative.parts[:1] == ("..",):
            raise ConfigError(f'{where}: field "image" must stay inside the corpus folder: {image}')
        path = docs_path.parent / relative
        if not path.is_file():
            raise ConfigError(f'{where}: field "image": no such file {path}')
        image = path
    return _Doc(line, obj["id"], obj["url"], obj["title"], obj["text"], image)


def _insert_image(conn: sqlite3.Connection, doc: _Doc, docs_path: Path) -> None:
    assert doc.image is not None
    try:
        img = imgidx.open_image(doc.image)
        hashes, thumbnail = imgidx.signatures(img, imgidx.CORPUS_CROPS), imgidx.thumbnail_jpeg(img)
    except _IMAGE_ERRORS as exc:
        raise ConfigError(
            f'{docs_path} line {doc.line}: field "image": cannot decode {doc.image}: {exc}'
        ) from exc
    conn.execute("INSERT INTO images VALUES (?, ?, ?)", (doc.line, hashes.tobytes(), thumbnail))


def _write_index(
    conn: sqlite3.Connection, docs: BinaryIO, docs_path: Path, stamp: Stamp, progress: bool
) -> None:
    conn.executescript("PRAGMA journal_mode=OFF; PRAGMA synchronous=OFF;" + _STRUCTURE + textidx.SCHEMA)
    sha = hashlib.sha256()
    counts = {"docs": 0, "images": 0}
    bar = tqdm(total=stamp[0], unit="B", unit_scale=True, desc=f"indexing {docs_path}", disable=not progress)
    with bar:
        for line, raw in enumerate(docs, start=1):
            sha.update(raw)
            bar.update(len(raw))
            doc = _parse_doc(raw, line, docs_path)
            if doc is None:
                continue
            try:
                conn.execute(
                    "INSERT INTO docs VALUES (?, ?, ?, ?, ?)", (line, doc.id, doc.url, doc.title, doc.text)
                )
            except sqlite3.IntegrityError:
                (first,) = conn.execute("SELECT line FROM docs WHERE id = ?", (doc.id,)).fetchone()
                raise ConfigError(
                    f"{docs_path} line {line}: duplicate id {doc.id!r} (first on line {first})"
                ) from None
            counts["docs"] += 1
            if doc.image is not None:
                _insert_image(conn, doc, docs_path)
                counts["images"] += 1
    conn.execute(textidx.POPULATE_FTS)
    meta = {
        "version": INDEX_VERSION,
        "docs_size": stamp[0],
        "docs_mtime_ns": stamp[1],
        "docs_sha256": sha.hexdigest(),
    }
    meta.update(counts)
    conn.executemany("INSERT INTO meta VALUES (?, ?)", [(k, str(v)) for k, v in meta.items()])
    conn.commit()


def default_index_path(corpus_dir: Path, index_path: str | os.PathLike[str] | None) -> Path:
    return Path(index_path) if index_path is not None else corpus_dir / DEFAULT_INDEX_NAME


def build_index(
    corpus_dir: str | os.PathLike[str],
    index_path: str | os.PathLike[str] | None = None,
    *,
    progress: bool = True,
) -> Path:
    """(Re)build the index of ``corpus_dir`` and return its path. Raises :class:`ConfigError`
    naming the line of the first malformed row; the previous index, if any, is left untouched."""
    corpus = Path(corpus_dir)
    docs_path, target = corpus / DOCS_FILE, default_index_path(corpus, index_path)
    stamp = docs_stamp(docs_path)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f"{target.name}.", suffix=".tmp", dir=target.parent)
        os.close(fd)
        os.chmod(tmp_name, 0o644)  # mkstemp makes it private; the index is as readable as the corpus
    except OSError as exc:
        raise ConfigError(
            f"cannot write the index {target} ({exc.strerror}); choose another index_path"
        ) from exc
    tmp = Path(tmp_name)
    try:
        with docs_path.open("rb") as docs, closing(sqlite3.connect(tmp)) as conn:
            _write_index(conn, docs, docs_path, stamp, progress)
        os.replace(tmp, target)
    except (sqlite3.Error, OSError) as exc:
        raise ConfigError(f"cannot build the index {target}: {exc}") from exc
    finally:
        tmp.unlink(missing_ok=True)
    return target


def connect_readonly(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, check_same_thread=False)


def is_fresh(index_path: Path, docs_path: Path) -> bool:
    """Whether the index exists, is of this version and was built from this docs.jsonl."""
    if not index_path.is_file():
        return False
    try:
        with closing(connect_readonly(index_path)) as conn:
            meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
    except sqlite3.Error:
        return False
    size, mtime_ns = docs_stamp(docs_path)
    if meta.get("version") != INDEX_VERSION or meta.get("docs_size") != str(size):
        return False
    if meta.get("docs_mtime_ns") == str(mtime_ns):
        return True
    sha = hashlib.sha256()  # touched but maybe unchanged: compare the contents
    with docs_path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            sha.update(block)
    return meta.get("docs_sha256") == sha.hexdigest()
