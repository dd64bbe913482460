"""The ``mmsr`` command: its groups, each imported only when it runs.

    mmsr serve                      the OpenAI-compatible server (docs/server.md)
    mmsr chat "question" --image P  ask a running server, showing searches as they happen
    mmsr index build CORPUS_DIR     build the local search index of a corpus folder
    mmsr cache ...                  inspect, export and import a search cache
    mmsr pack ...                   prompt packs: import the official release's, show one
    mmsr world / mmsr eval          the miniature world and the evaluation (mmsr_bench)
    mmsr bench ...                  load benchmarks, with stand-in model and web servers
    mmsr train ...                  tiny checkpoints, GRPO, SFT, curation (mmsr_train)

:data:`COMMANDS` names each sub-command's ``module:attribute`` and its one-line help; the module is
imported when the sub-command runs (or its own ``--help`` is asked), never at start-up, so
``mmsr --help`` stays fast and serving never imports the training or benchmark packages. A typer
app becomes a command group, a function a single command.
"""

from __future__ import annotations

import importlib
from typing import Any

import typer
import typer.core
import typer.main

COMMANDS: dict[str, tuple[str, str]] = {
    "serve": (
        "mmsr_serve.api.cli:serve",
        "Serve the search loop behind OpenAI-compatible /v1/chat/completions and /v1/responses.",
    ),
    "chat": (
        "mmsr_serve.api.cli:chat",
        "Ask a running `mmsr serve`; shows the reasoning, the searches and the answer as they happen.",
    ),
    "index": ("mmsr_serve.search.index_cli:index_app", "The embedded local search index."),
    "cache": ("mmsr_serve.search.cache_cli:cache_app", "Inspect, export and import a search cache."),
    "pack": ("mmsr_serve.agent.pack_cli:pack_app", "Prompt packs: import the official release's, show one."),
    "world": ("mmsr_bench.world.cli:app", "Miniature invented worlds to train and evaluate on."),
    "eval": (
        "mmsr_bench.eval.cli:eval_command",
        "Evaluate question sets in the search modes off, always and auto: the paper's table.",
    ),
    "bench": (
        "mmsr_bench.load.cli:app",
        "Load benchmarks: latency, throughput and search calls of a deployment.",
    ),
    "train": ("mmsr_train.cli:train_app", "Train search-capable checkpoints (GRPO, SFT), curate data."),
}


def load_command(name: str) -> Any:
    """The click command of one of :data:`COMMANDS`, importing its module."""
    module, _, attribute = COMMANDS[name][0].partition(":")
    target: Any = getattr(importlib.import_module(module), attribute)
    if isinstance(target, typer.Typer):
        return typer.main.get_group(target)
    single = typer.Typer()
    single.command(name)(target)
    return typer.main.get_command(single)


class _Deferred(typer.core.TyperCommand):
    """A sub-command listed by name and help; its module is imported when it is invoked."""

    def __init__(self, name: str, short_help: str) -> None:
        super().__init__(name, help=short_help, short_help=short_help)

    def make_context(self, info_name: str | None, args: list[str], parent: Any = None, **extra: Any) -> Any:
        return load_command(self.name or "").make_context(info_name, args, parent=parent, **extra)


class _Commands(typer.core.TyperGroup):
    def list_commands(self, ctx: Any) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: Any, cmd_name: str) -> typer.core.TyperCommand | None:
        if cmd_name not in COMMANDS:
            return None
        return _Deferred(cmd_name, COMMANDS[cmd_name][1])


app = typer.Typer(
    cls=_Commands,
    help="Serve and train vision-language models that search on demand.",
    no_args_is_help=True,
)


def _version(value: bool) -> None:
    if value:
        from mmsr_serve import __version__

        typer.echo(f"mmsr {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Show the version and exit."
    ),
) -> None:
    """Serve and train vision-language models that search on demand."""


def main() -> None:
    app()


if __name__ == "__main__":
    main()
