"""The ``mmsr`` command.

    mmsr serve                      the OpenAI-compatible server (docs/server.md)
    mmsr chat "question" --image P  ask a running server, showing searches as they happen
    mmsr index build CORPUS_DIR     build the local search index of a corpus folder
    mmsr train tiny-model OUT       write a tiny random Qwen2.5-VL checkpoint (tests, smoke runs)

Each sub-command imports what it needs when it runs, so ``mmsr --help`` stays fast.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from mmsr_serve.api.cli import chat, serve
from mmsr_serve.errors import MMSRError

app = typer.Typer(help="Serve and train vision-language models that search on demand.", no_args_is_help=True)
index_app = typer.Typer(help="The embedded local search index.", no_args_is_help=True)
train_app = typer.Typer(help="Training helpers.", no_args_is_help=True)
app.command("serve")(serve)
app.command("chat")(chat)
app.add_typer(index_app, name="index")
app.add_typer(train_app, name="train")


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


@train_app.command("tiny-model")
def train_tiny_model(
    out: Annotated[Path, typer.Argument(help="Output folder for the checkpoint.")],
    seed: Annotated[int, typer.Option(help="Initialisation seed.")] = 0,
) -> None:
    """Write a tiny, randomly initialised Qwen2.5-VL checkpoint with its own tokenizer (offline)."""
    from mmsr_train.tiny_model import build_tiny_qwen2_5_vl

    path = build_tiny_qwen2_5_vl(out, seed=seed)
    typer.echo(f"tiny checkpoint written to {path}")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
