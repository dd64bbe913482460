"""The ``mmsr`` command.

    mmsr serve                      the OpenAI-compatible server (docs/server.md)
    mmsr chat "question" --image P  ask a running server, showing searches as they happen
    mmsr index build CORPUS_DIR     build the local search index of a corpus folder
    mmsr train ...                  tiny checkpoints, GRPO, SFT, curation (mmsr_train.cli)

Each sub-command imports what it needs when it runs, so ``mmsr --help`` stays fast.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from mmsr_serve.api.cli import chat, serve
from mmsr_serve.errors import MMSRError
from mmsr_serve.search.cache_cli import cache_app
from mmsr_train.cli import train_app
from mmsr_train.eval.cli import eval_command
from mmsr_train.world.cli import app as world_app

app = typer.Typer(help="Serve and train vision-language models that search on demand.", no_args_is_help=True)
index_app = typer.Typer(help="The embedded local search index.", no_args_is_help=True)
app.command("serve")(serve)
app.command("chat")(chat)
app.add_typer(index_app, name="index")
app.add_typer(train_app, name="train")
app.add_typer(cache_app, name="cache")
app.add_typer(world_app, name="world")
app.command("eval")(eval_command)


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


def main() -> None:
    app()


if __name__ == "__main__":
    main()
