"""``mmsr index``: the embedded local search index. Only typer is imported with the module."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from mmsr_serve.errors import MMSRError

index_app = typer.Typer(help="The embedded local search index.", no_args_is_help=True)


@index_app.command("build")
def index_build(
    corpus_dir: Annotated[Path, typer.Argument(help="Folder holding docs.jsonl and its images.")],
    index: Annotated[
        Path | None, typer.Option(help="Index file (default: CORPUS_DIR/.mmsr-index.sqlite).")
    ] = None,
) -> None:
    """Build (or rebuild) the local index of a corpus folder."""
    from mmsr_serve.search.local import build_index

    try:
        path = build_index(corpus_dir, index, progress=True)
    except MMSRError as exc:
        raise typer.BadParameter(str(exc)) from exc
    typer.echo(f"index written to {path}")
