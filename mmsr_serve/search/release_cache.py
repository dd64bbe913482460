"""The released MMSearch-R1 image-search cache, replayed through mmsr's search cache.

The release trained on Google Lens results it recorded once and published as pickles next to
its data (``fvqa_train_image_search_results_cache.pkl``), keyed by each row's ``data_id``,
because FVQA's ``image_urls`` column is empty. mmsr keys an image search by the sha256 of the
image's bytes, so the import goes through the data file: ``data_id`` -> the row's image bytes ->
``sha256:<hex>``, and each recorded result becomes an ``image`` entry of the provider the run
will name (``serpapi-lens`` by default), at the ``k`` the run will ask for::

    mmsr cache import fvqa_train_image_search_results_cache.pkl --data fvqa_train.parquet
    mmsr train grpo ... --image-search serpapi-lens --search-cache-mode replay

Pickles execute code when loaded; this reader refuses every class but PIL's images and plain
containers, so a tampered file is an error, not a program. The published pickle's exact layout
is not documented; the reader takes, per ``data_id``, any of the shapes a results record can have:

- the release tool's own return, ``(results_text, [images], stat)``: titles are the text's
  ``title:`` lines, in order, one per image;
- a mapping of parallel lists (``titles``/``images``/``urls``, matched by key name);
- a list of hits, each a mapping (title, image or thumbnail, url or link) or a pair
  ``(image, title)``;

and at the top a mapping ``data_id -> record`` or a list of records carrying a ``data_id`` key.
Images may be PIL images (written as PNG: the pixels the model saw, without a second JPEG loss),
encoded bytes, or ``data:`` URLs; an ``http(s)`` string is kept as the hit's URL without a
thumbnail.
"""

from __future__ import annotations

import hashlib
import io
import pickle
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image, UnidentifiedImageError

from mmsr_serve.errors import ConfigError, ImageError
from mmsr_serve.images import parse_data_url
from mmsr_serve.search.base import ImageHit, SearchResults
from mmsr_serve.search.cache import SearchCache

__all__ = ["ReleaseImport", "data_image_hashes", "import_release_cache", "load_release_pickle", "records"]

_CONTAINERS = {
    "dict",
    "list",
    "tuple",
    "set",
    "frozenset",
    "bytes",
    "bytearray",
    "str",
    "int",
    "float",
    "bool",
    "object",
}
_ALLOWED = {("collections", "OrderedDict"), ("_codecs", "encode"), ("copyreg", "_reconstructor")}
_TITLE_LINE = re.compile(r"^\s*title:\s?(.*?)\s*$", re.MULTILINE)


class _ImagesOnly(pickle.Unpickler):
    """An unpickler that builds PIL images and plain containers, and nothing else."""

    def find_class(self, module: str, name: str) -> Any:
        if (module == "builtins" and name in _CONTAINERS) or (module, name) in _ALLOWED:
            return super().find_class(module, name)
        if module == "PIL.Image" or (module.startswith("PIL.") and module.endswith("ImagePlugin")):
            found = super().find_class(module, name)
            if isinstance(found, type) and issubclass(found, Image.Image):
                return found
        raise pickle.UnpicklingError(f"it references {module}.{name}, which is not an image or a container")


def load_release_pickle(path: str | Path) -> Any:
    """The object a release cache pickle holds, refusing anything but images and containers."""
    try:
        with Path(path).open("rb") as f:
            return _ImagesOnly(f).load()
    except (pickle.UnpicklingError, EOFError, AttributeError, ImportError, ValueError, TypeError) as exc:
        raise ConfigError(f"{path}: not a release image-search cache ({exc})") from exc


def data_image_hashes(path: str | Path) -> dict[str, str]:
    """``data_id`` -> sha256 of the row's image bytes, for a release (or FVQA) parquet file.

    Reads only the two columns (the train file is 1.5 GB of images)."""
    try:
        import pyarrow.parquet as pq  # type: ignore[import-untyped]
    except ImportError as exc:  # pragma: no cover - pyarrow comes with mmsr[train]
        raise ConfigError("reading the data file needs pyarrow (pip install 'mmsr[train]')") from exc
    try:
        columns = pq.read_schema(path).names
        if "data_id" not in columns:
            raise ConfigError(f"{path}: no data_id column (columns: {', '.join(columns)})")
        image_column = next((c for c in ("images", "image") if c in columns), None)
        if image_column is None:
            raise ConfigError(f"{path}: no images column (columns: {', '.join(columns)})")
        table = pq.read_table(path, columns=["data_id", image_column])
    except OSError as exc:
        raise ConfigError(f"{path}: not a readable parquet file ({exc})") from exc
    hashes: dict[str, str] = {}
    ids, images = table.column("data_id").to_pylist(), table.column(image_column).to_pylist()
    for data_id, value in zip(ids, images, strict=True):
        if isinstance(value, list | tuple):
            value = value[0] if value else None
        if isinstance(value, dict):
            value = value.get("bytes")
        if data_id is not None and isinstance(value, bytes) and value:
            hashes[str(data_id)] = hashlib.sha256(value).hexdigest()
    return hashes


def records(obj: Any) -> Iterator[tuple[str, Any]]:
    """``(data_id, record)`` pairs of the pickle's top level."""
    if isinstance(obj, Mapping):
        for key, value in obj.items():
            yield str(key), value
        return
    if isinstance(obj, list | tuple):
        for index, item in enumerate(obj):
            if not isinstance(item, Mapping) or "data_id" not in item:
                raise ConfigError(f"item {index} of the list has no data_id")
            rest = {k: v for k, v in item.items() if k != "data_id"}
            yield str(item["data_id"]), rest
        return
    raise ConfigError(f"expected a mapping of data_id to results, found {type(obj).__name__}")


def _encode(image: Any) -> tuple[bytes | None, str]:
    """(thumbnail bytes, url) of one recorded image."""
    if isinstance(image, Image.Image):
        buffer = io.BytesIO()
        image.convert("RGB").save(buffer, format="PNG")
        return buffer.getvalue(), ""
    if isinstance(image, bytes | bytearray):
        try:
            with Image.open(io.BytesIO(image)) as probe:
                probe.verify()
        except (UnidentifiedImageError, OSError, ValueError) as exc:
            raise ValueError(f"image bytes that do not decode ({exc})") from exc
        return bytes(image), ""
    if isinstance(image, Mapping) and isinstance(image.get("bytes"), bytes | bytearray):
        return _encode(image["bytes"])
    if isinstance(image, str):
        if image.startswith("data:"):
            try:
                return parse_data_url(image), ""
            except ImageError as exc:
                raise ValueError(str(exc)) from exc
        if image.startswith(("http://", "https://")):
            return None, image
    if image is None:
        return None, ""
    raise ValueError(f"an image of type {type(image).__name__}")


def _pick(record: Mapping[str, Any], *words: str) -> Any:
    for key, value in record.items():
        if any(word in str(key).lower() for word in words):
            return value
    return None


def _hit(image: Any, title: Any, url: Any) -> ImageHit:
    thumbnail, image_url = _encode(image)
    return ImageHit(str(title or ""), str(url or image_url or ""), thumbnail)


def _hit_of(item: Any) -> ImageHit:
    if isinstance(item, Mapping):
        image = _pick(item, "thumb", "image", "img")
        title = _pick(item, "title", "name")
        return _hit(image, title, _pick(item, "link", "url", "source"))
    if isinstance(item, list | tuple) and len(item) == 2:
        first, second = item
        image, title = (second, first) if isinstance(first, str) and not isinstance(second, str) else item
        return _hit(image, title, None)
    if isinstance(item, Image.Image | bytes):
        return _hit(item, None, None)
    raise ValueError(f"a hit of type {type(item).__name__}")


def parse_record(record: Any) -> list[ImageHit]:
    """The hits of one ``data_id``'s record, in rank order (any shape the module names)."""
    if isinstance(record, list | tuple) and len(record) == 3 and isinstance(record[0], str):
        text, images = record[0], record[1]
        if isinstance(images, list | tuple):  # the release tool's (text, images, stat)
            titles = _TITLE_LINE.findall(text)
            return [_hit(image, titles[i] if i < len(titles) else "", None) for i, image in enumerate(images)]
    if isinstance(record, Mapping):
        nested = _pick(record, "result", "hits", "items")
        if isinstance(nested, list | tuple):
            return parse_record(nested)
        images, titles = _pick(record, "thumb", "image", "img"), _pick(record, "title")
        urls = _pick(record, "link", "url")
        text = _pick(record, "str", "text")
        if isinstance(images, list | tuple):
            if not isinstance(titles, list | tuple):
                titles = _TITLE_LINE.findall(text) if isinstance(text, str) else []
            urls = urls if isinstance(urls, list | tuple) else []
            return [
                _hit(image, titles[i] if i < len(titles) else "", urls[i] if i < len(urls) else "")
                for i, image in enumerate(images)
            ]
        raise ValueError(f"a mapping with keys {sorted(map(str, record))[:8]} and no list of images")
    if isinstance(record, list | tuple):
        return [_hit_of(item) for item in record]
    if record is None:
        return []
    raise ValueError(f"a record of type {type(record).__name__}")


@dataclass
class ReleaseImport:
    """What an import did: entries written and what could not be matched."""

    imported: int = 0
    hits: int = 0
    without_thumbnail: int = 0
    unknown_ids: list[str] = field(default_factory=list)
    """data_ids of the pickle that the data file does not have (nothing to key them by)."""
    not_cached: int = 0
    """Rows of the data file the pickle has no results for (a replay misses on them)."""
    shared_images: int = 0
    """Records whose image another record already had (one entry serves both)."""


def import_release_cache(
    pickle_path: str | Path,
    data_paths: Iterable[str | Path],
    cache: SearchCache,
    *,
    provider: str = "serpapi-lens",
    k: int = 5,
) -> ReleaseImport:
    """Write the release pickle's results into ``cache`` as ``provider``'s image searches (all or
    none: a record that cannot be read is an error naming its ``data_id``)."""
    if k < 1:
        raise ConfigError(f"k must be at least 1, got {k}")
    hashes: dict[str, str] = {}
    for path in data_paths:
        hashes.update(data_image_hashes(path))
    if not hashes:
        raise ConfigError("the data files hold no rows with a data_id and an image")
    report = ReleaseImport()
    rows: dict[str, SearchResults] = {}
    for data_id, record in records(load_release_pickle(pickle_path)):
        try:
            hits = parse_record(record)[:k]
        except ValueError as exc:
            raise ConfigError(f"{pickle_path}: the results of {data_id!r} are not readable: {exc}") from exc
        digest = hashes.get(data_id)
        if digest is None:
            report.unknown_ids.append(data_id)
            continue
        report.shared_images += digest in rows
        rows[digest] = SearchResults(list(hits), provider)
        report.hits += len(hits)
        report.without_thumbnail += sum(hit.thumbnail is None for hit in hits)
    if not rows:
        raise ConfigError(
            f"none of the {len(report.unknown_ids)} data_ids of {pickle_path} is in the data files"
            " (is it the pickle of this split?)"
        )
    cache.put_many(provider, [("image", f"sha256:{digest}", k, results) for digest, results in rows.items()])
    report.imported = len(rows)
    report.not_cached = sum(digest not in rows for digest in set(hashes.values()))
    return report
