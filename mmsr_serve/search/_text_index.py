"""Full-text side of the local index: FTS5 schema, query sanitizing and query-focused extracts.

Queries are written by a model and may contain anything: quotes, FTS5 operators (``AND``,
``NEAR``, ``*``, ``title:``), punctuation, emoji. Rather than escaping FTS5 syntax, the query is
reduced to its words (letters and digits), common English function words are dropped, and every
remaining word becomes a quoted FTS5 string; the strings are joined with ``OR`` so a document
matching some of the terms still ranks (BM25 orders by how many and how rare). A quoted string is
never an operator, so no input can produce an FTS5 syntax error.

The tokenizer is ``porter unicode61 remove_diacritics 2``: English stemming (``herons`` finds
``heron``), Unicode word boundaries and accent folding (``cafe`` finds ``café``).

The hit text is an extract, not the whole document: the sentences that contain the most distinct
query terms, kept in document order, within a character budget. Term matching for extracts uses
a light suffix-stripping stemmer, close enough to Porter for choosing sentences.
"""

from __future__ import annotations

import functools
import re
import unicodedata

SCHEMA = """
CREATE TABLE docs(
    line INTEGER PRIMARY KEY,  -- line number in docs.jsonl
    id TEXT NOT NULL UNIQUE,
    url TEXT NOT NULL,
    title TEXT NOT NULL,
    text TEXT NOT NULL
);
CREATE VIRTUAL TABLE docs_fts USING fts5(
    title, text, content='docs', content_rowid='line',
    tokenize='porter unicode61 remove_diacritics 2'
);
"""
POPULATE_FTS = "INSERT INTO docs_fts(rowid, title, text) SELECT line, title, text FROM docs"
SEARCH = """
SELECT d.title, d.url, d.text, bm25(docs_fts, ?, 1.0) AS rank
FROM docs_fts JOIN docs AS d ON d.line = docs_fts.rowid
WHERE docs_fts MATCH ?
ORDER BY rank LIMIT ?
"""

DEFAULT_EXTRACT_CHARS = 400
DEFAULT_MIN_RELATIVE_SCORE = 0.25
"""Text hits below this share of the best hit's BM25 score are not returned."""
MAX_QUERY_TERMS = 32
_WORD = re.compile(r"[^\W_]+")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|\s*\n\s*")
_SUFFIXES = ("ings", "ers", "ing", "ed", "er", "es", "ly", "s")
# Dropped from queries (unless nothing else is left): they match everything and mean little.
_STOPWORDS = """
    a an the of in on at to for by with from as and or not no is are was were be been being
    it its this that these those what which who whom whose when where why how did does do
    has have had can could will would should may might about into than then there their they
    them he she his her we you your i me my our
"""
STOPWORDS = frozenset(_STOPWORDS.split())


def query_words(query: str) -> list[str]:
    """The searchable words of ``query``, lower-cased, deduplicated, function words dropped.

    Lower-cased, not casefolded: FTS5's tokenizer keeps ``ß`` and would not match ``ss``.

    If only function words remain (``"who is it"``), they are kept: better than nothing.
    """
    words = list(dict.fromkeys(w.lower() for w in _WORD.findall(unicodedata.normalize("NFKC", query))))
    content = [w for w in words if w not in STOPWORDS]
    return (content or words)[:MAX_QUERY_TERMS]


def fts_match(words: list[str]) -> str:
    """An FTS5 MATCH expression: any of ``words``, each a quoted string (never an operator)."""
    return " OR ".join(f'"{w}"' for w in words)


def _stem(word: str) -> str:
    """The word without accents, case-folded, its commonest English suffix cut (memoised for
    words of up to 64 characters: the words of pages and queries repeat, and this is the
    summariser's inner loop; a page's long tokens are not kept)."""
    return _stem_memo(word) if len(word) <= 64 else _stem_word(word)


@functools.lru_cache(maxsize=1 << 16)
def _stem_memo(word: str) -> str:
    return _stem_word(word)


def _stem_word(word: str) -> str:
    word = "".join(c for c in unicodedata.normalize("NFKD", word) if not unicodedata.combining(c))
    word = word.casefold()
    for suffix in _SUFFIXES:
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            return word[: -len(suffix)]
    return word


def _stems(text: str) -> set[str]:
    return {_stem(w) for w in _WORD.findall(text)}


def _shorten(sentence: str, terms: set[str], max_chars: int) -> str:
    """Cut an over-long sentence to a window that starts a little before its first query term."""
    first = next((m.start() for m in _WORD.finditer(sentence) if _stem(m.group()) in terms), 0)
    start = max(0, first - max_chars // 4)
    if start > 0:
        space = sentence.find(" ", start)
        start = space + 1 if 0 <= space < first else start
    end = start + max_chars - 2
    if end < len(sentence):
        space = sentence.rfind(" ", start, end)
        end = space if space > start else end
    head = "…" if start > 0 else ""
    tail = "…" if end < len(sentence) else ""
    return head + sentence[start:end].strip() + tail


def extract(text: str, words: list[str], max_chars: int = DEFAULT_EXTRACT_CHARS) -> str:
    """The sentences of ``text`` that best match ``words``, in document order, within ``max_chars``.

    Sentences are ranked by how many distinct query terms they contain (earlier first on ties) and
    taken greedily while they fit; gaps between non-adjacent sentences are marked with ``…``. When
    no sentence matches (the title did), the opening sentences are returned instead.
    """
    sentences = [s.strip() for s in _SENTENCE_END.split(text) if s.strip()]
    if not sentences:
        return ""
    terms = {_stem(w) for w in words}
    scores = [len(terms & _stems(s)) for s in sentences]
    ranked = sorted((i for i, score in enumerate(scores) if score > 0), key=lambda i: (-scores[i], i))
    lead = not ranked
    chosen: list[int] = []
    used = 0
    for i in range(len(sentences)) if lead else ranked:
        cost = len(sentences[i]) + 3  # with its separator
        if used + cost <= max_chars + 3:
            chosen.append(i)
            used += cost
        elif not chosen:
            return _shorten(sentences[i], terms, max_chars)
        elif lead:
            break
    chosen.sort()
    parts: list[str] = []
    for pos, i in enumerate(chosen):
        if pos > 0:
            parts.append(" " if i == chosen[pos - 1] + 1 else " … ")
        parts.append(sentences[i])
    return "".join(parts)
