"""``mmsr cache``: inspect, export and import a search cache file.

    mmsr cache stats                          entries per provider and kind
    mmsr cache list --provider serpapi -n 20  the latest entries (query, k, hits, when)
    mmsr cache export searches.jsonl          every entry as one JSON line (thumbnails base64)
    mmsr cache import searches.jsonl          add (or overwrite) entries from an export
    mmsr cache import fvqa_train_image_search_results_cache.pkl --data fvqa_train.parquet
                                              the release's recorded image searches

The file is ``--cache`` (or ``MMSR_SEARCH_CACHE``), by default the server's default cache file.
An exported file replays anywhere: import it, then serve or evaluate with ``--search-cache-mode
replay`` to repeat a benchmark or a training run at zero API cost.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Annotated

import typer

from mmsr_serve.agent.limits import Limits
from mmsr_serve.errors import ConfigError
from mmsr_serve.search.cache import SearchCache
from mmsr_serve.search.config import default_cache_path
from mmsr_serve.search.release_cache import import_release_cache

cache_app = typer.Typer(help="Inspect, export and import a search cache.", no_args_is_help=True)

CacheOpt = Annotated[
    Path | None,
    typer.Option("--cache", "-c", envvar="MMSR_SEARCH_CACHE", help="Cache file (default: the server's)."),
]


def _missing(path: Path | None) -> Path | None:
    """The cache file's path when it does not exist yet (a fresh install: nothing cached)."""
    path = path or default_cache_path()
    return None if path.is_file() else path


def _open(path: Path | None) -> SearchCache:
    path = path or default_cache_path()
    try:
        return SearchCache(path)
    except ConfigError as exc:
        raise typer.BadParameter(str(exc), param_hint="--cache") from exc


@cache_app.command("stats")
def stats(cache: CacheOpt = None, as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """How many entries the cache holds, per provider and kind."""
    if (missing := _missing(cache)) is not None:
        if as_json:
            typer.echo(json.dumps({"file": str(missing), "entries": 0}))
        else:
            typer.echo(f"{missing}: 0 entries (the cache is empty: nothing was searched with it yet)")
        return
    store = _open(cache)
    try:
        result = store.stats()
    finally:
        store.close()
    if as_json:
        typer.echo(json.dumps({"file": str(store.path), "entries": result.entries, **result.by_provider}))
        return
    typer.echo(f"{store.path}: {result.entries} entries")
    for name, count in sorted(result.by_provider.items()):
        typer.echo(f"  {name:<40} {count}")


@cache_app.command("list")
def list_entries(
    cache: CacheOpt = None,
    provider: Annotated[str | None, typer.Option(help="Only this provider.")] = None,
    kind: Annotated[str | None, typer.Option(help="Only image or text searches.")] = None,
    limit: Annotated[int, typer.Option("--limit", "-n", help="How many (latest first); 0: all.")] = 20,
) -> None:
    """The latest entries: when, provider/kind, k, number of hits, query (or image hash)."""
    if (missing := _missing(cache)) is not None:
        typer.echo(f"the cache is empty (no file at {missing} yet)", err=True)
        return
    store = _open(cache)
    try:
        entries = store.entries()
    finally:
        store.close()
    chosen = [e for e in reversed(entries) if (provider in (None, e.provider)) and (kind in (None, e.kind))]
    for entry in chosen[:limit] if limit else chosen:
        when = dt.datetime.fromtimestamp(entry.created_at).isoformat(timespec="seconds")
        typer.echo(f"{when}  {entry.provider}/{entry.kind}  k={entry.k}  hits={entry.n_hits}  {entry.query}")


@cache_app.command("export")
def export(
    out: Annotated[Path, typer.Argument(help="The JSON lines file to write.")],
    cache: CacheOpt = None,
) -> None:
    """Write every entry to a JSON lines file."""
    if (missing := _missing(cache)) is not None:
        out.write_text("", encoding="utf-8")
        typer.echo(f"exported 0 entries to {out} (the cache is empty: no file at {missing} yet)")
        return
    store = _open(cache)
    try:
        count = store.export_jsonl(out)
    finally:
        store.close()
    typer.echo(f"exported {count} entries to {out}")


@cache_app.command("import")
def import_(
    source: Annotated[
        Path, typer.Argument(help="A file written by `mmsr cache export`, or a release cache pickle (.pkl).")
    ],
    cache: CacheOpt = None,
    data: Annotated[
        list[Path] | None,
        typer.Option(
            "--data", help="For a release pickle: the parquet file(s) of its split (data_id -> image)."
        ),
    ] = None,
    provider: Annotated[
        str, typer.Option(help="For a release pickle: the image-search provider the run will name.")
    ] = "serpapi-lens",
    k: Annotated[
        int, typer.Option("--k", min=1, help="For a release pickle: the top_k the run will search with.")
    ] = Limits().top_k,
) -> None:
    """Add the entries of an exported file (all or none); existing keys are overwritten.

    A release image-search cache (``fvqa_train_image_search_results_cache.pkl``) is read through
    the split's parquet file: each ``data_id``'s recorded results become the image searches of
    that row's image, replayed with ``--search-cache-mode replay`` (docs/official-checkpoint.md)."""
    if not source.is_file():
        raise typer.BadParameter(f"no such file: {source}", param_hint="SOURCE")
    release = source.suffix in (".pkl", ".pickle")
    if release and not data:
        raise typer.BadParameter(
            "a release cache pickle needs the data file of its split", param_hint="--data"
        )
    if not release and data:
        raise typer.BadParameter("--data is for a release cache pickle (.pkl)", param_hint="--data")
    for path in data or []:
        if not path.is_file():
            raise typer.BadParameter(f"no such file: {path}", param_hint="--data")
    store = _open(cache)
    try:
        if release:
            report = import_release_cache(source, data or [], store, provider=provider, k=k)
        else:
            count = store.import_jsonl(source)
    except ConfigError as exc:
        raise typer.BadParameter(str(exc), param_hint="SOURCE") from exc
    finally:
        store.close()
    if not release:
        typer.echo(f"imported {count} entries into {store.path}")
        return
    typer.echo(
        f"imported {report.imported} {provider} image searches (k={k}, {report.hits} hits) into {store.path}"
    )
    if report.without_thumbnail:
        typer.echo(f"  {report.without_thumbnail} hits have no thumbnail (a URL only)")
    if report.shared_images:
        typer.echo(f"  {report.shared_images} records share an image with another (one entry serves both)")
    if report.not_cached:
        typer.echo(f"  {report.not_cached} images of the data files have no recorded results (replay misses)")
    if report.unknown_ids:
        shown = ", ".join(report.unknown_ids[:5])
        skipped = len(report.unknown_ids)
        typer.echo(f"  {skipped} data_ids are not in the data files, skipped: {shown}", err=True)
