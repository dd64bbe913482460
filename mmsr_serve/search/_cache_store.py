"""The SQLite file behind the search cache: keys, JSON values, stats, export and import.

One table, one row per (provider, kind, query, k). The journal stays in rollback mode (not WAL)
so the file works on network storage shared by several gateways; writers wait up to 10 s for
each other. Values are JSON, thumbnails base64, so an export is readable and diffable.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import sqlite3
import threading
import time
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from mmsr_serve.errors import ConfigError, SearchError
from mmsr_serve.search.base import Hit, ImageHit, SearchResults, TextHit

Kind = Literal["image", "text"]
_SCHEMA = """
CREATE TABLE IF NOT EXISTS entries(
    key TEXT PRIMARY KEY,
    provider TEXT NOT NULL,
    kind TEXT NOT NULL,
    query TEXT NOT NULL,  -- normalized text, or sha256:<hex> of the image bytes
    k INTEGER NOT NULL,
    n_hits INTEGER NOT NULL,
    created_at REAL NOT NULL,
    value TEXT NOT NULL   -- {"provider": ..., "hits": [...]}
);
"""
_COLUMNS = "key, provider, kind, query, k, n_hits, created_at"


def normalize_query(query: str) -> str:
    return " ".join(unicodedata.normalize("NFKC", query).casefold().split())


def cache_key(provider: str, kind: str, query: str, k: int) -> str:
    return hashlib.sha256(json.dumps([provider, kind, query, k]).encode()).hexdigest()


def _hit_to_json(hit: Hit) -> dict[str, Any]:
    score = float(hit.score) if hit.score is not None else None  # numpy floats are not JSON
    if isinstance(hit, ImageHit):
        thumb = base64.b64encode(hit.thumbnail).decode() if hit.thumbnail is not None else None
        return {"type": "image", "title": hit.title, "url": hit.url, "thumbnail": thumb, "score": score}
    return {"type": "text", "title": hit.title, "url": hit.url, "text": hit.text, "score": score}


def _hit_from_json(obj: dict[str, Any]) -> Hit:
    if obj["type"] == "image":
        thumb = base64.b64decode(obj["thumbnail"]) if obj["thumbnail"] is not None else None
        return ImageHit(obj["title"], obj["url"], thumb, obj["score"])
    return TextHit(obj["title"], obj["url"], obj["text"], obj["score"])


_Row = tuple[str, str, str, int, int, float, str]  # provider, kind, query, k, n_hits, created_at, value


def _row_from_export(obj: dict[str, Any]) -> _Row:
    value = obj["value"]
    hits = [_hit_from_json(h) for h in value["hits"]]
    if obj["kind"] not in ("image", "text") or not isinstance(value["provider"], str):
        raise ValueError("unknown kind or provider")
    at = float(obj.get("created_at", time.time()))
    return (
        str(obj["provider"]),
        obj["kind"],
        str(obj["query"]),
        int(obj["k"]),
        len(hits),
        at,
        json.dumps(value),
    )


@dataclass(frozen=True)
class CacheEntry:
    key: str
    provider: str
    kind: str
    query: str
    k: int
    n_hits: int
    created_at: float


@dataclass(frozen=True)
class CacheStats:
    """What the file holds (``entries``, per ``provider/kind``) and, for a wrapper, what happened
    since it was created: lookups answered from the file, misses, provider calls, failed provider
    calls, and calls that joined an identical call already in flight."""

    entries: int
    by_provider: dict[str, int] = field(default_factory=dict)
    hits: int = 0
    misses: int = 0
    provider_calls: int = 0
    errors: int = 0
    joined: int = 0


class SearchCache:
    """The SQLite file behind the wrappers; usable on its own (``mmsr cache`` commands).

    Thread-safe: one connection under a lock (the wrappers call it from worker threads).
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._conn = sqlite3.connect(self.path, check_same_thread=False, timeout=10.0)
            self._conn.executescript(_SCHEMA)
        except (OSError, sqlite3.Error) as exc:
            raise ConfigError(f"cannot open the search cache {self.path}: {exc}") from exc

    def get(self, key: str) -> SearchResults | None:
        try:
            with self._lock:
                row = self._conn.execute("SELECT value FROM entries WHERE key = ?", (key,)).fetchone()
        except sqlite3.Error as exc:
            raise SearchError(f"the search cache is unavailable: {exc}") from exc
        if row is None:
            return None
        value = json.loads(row[0])
        return SearchResults([_hit_from_json(h) for h in value["hits"]], value["provider"], cached=True)

    def put(self, provider: str, kind: str, query: str, k: int, results: SearchResults) -> None:
        self.put_many(provider, [(kind, query, k, results)])

    def put_many(self, provider: str, entries: list[tuple[str, str, int, SearchResults]]) -> None:
        """Record several results of one provider in one transaction (all or none)."""
        now = time.time()
        rows: list[_Row] = []
        for kind, query, k, results in entries:
            value = {"provider": results.provider, "hits": [_hit_to_json(h) for h in results.hits]}
            rows.append((provider, kind, query, k, len(results.hits), now, json.dumps(value)))
        self._put(rows)

    def _put(self, rows: list[_Row]) -> None:
        keyed = [(cache_key(*row[:4]), *row) for row in rows]
        with self._lock, self._conn:
            self._conn.executemany("INSERT OR REPLACE INTO entries VALUES (?, ?, ?, ?, ?, ?, ?, ?)", keyed)

    def stats(self) -> CacheStats:
        with self._lock:
            rows = self._conn.execute("SELECT provider, kind, count(*) FROM entries GROUP BY 1, 2").fetchall()
        by_provider = {f"{provider}/{kind}": n for provider, kind, n in rows}
        return CacheStats(entries=sum(by_provider.values()), by_provider=by_provider)

    def entries(self) -> list[CacheEntry]:
        with self._lock:
            rows = self._conn.execute(f"SELECT {_COLUMNS} FROM entries ORDER BY created_at").fetchall()
        return [CacheEntry(*row) for row in rows]

    def export_jsonl(self, path: str | os.PathLike[str]) -> int:
        """Write every entry as one JSON line; returns how many."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT provider, kind, query, k, created_at, value FROM entries"
            ).fetchall()
        with Path(path).open("w", encoding="utf-8") as f:
            for provider, kind, query, k, created_at, value in rows:
                obj = {"provider": provider, "kind": kind, "query": query, "k": k, "created_at": created_at}
                f.write(json.dumps({**obj, "value": json.loads(value)}) + "\n")
        return len(rows)

    def import_jsonl(self, path: str | os.PathLike[str]) -> int:
        """Add (or overwrite) the entries of an exported file, all or none; returns how many."""
        rows: list[_Row] = []
        with Path(path).open(encoding="utf-8") as f:
            for line_no, line in enumerate(f, start=1):
                if line.strip():
                    try:
                        rows.append(_row_from_export(json.loads(line)))
                    except (ValueError, KeyError, TypeError) as exc:
                        raise ConfigError(f"{path} line {line_no}: not a cache entry ({exc!r})") from None
        self._put(rows)
        return len(rows)

    def close(self) -> None:
        with self._lock:
            self._conn.close()
