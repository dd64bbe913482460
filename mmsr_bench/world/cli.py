"""``mmsr world``: build miniature worlds (docs/world.md). Only typer is imported with the module."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

Opt = typer.Option
app = typer.Typer(help="Miniature invented worlds to train and evaluate on.", no_args_is_help=True)


@app.command("build")
def build(
    out: Annotated[Path, typer.Argument(help="Folder to write the world into.")],
    seed: Annotated[int, Opt(help="World seed: the same seed and options write the same bytes.")] = 0,
    entities: Annotated[int, Opt(help="Entities of the main world.", min=0)] = 80,
    known_fraction: Annotated[float, Opt(help="Share of known entities.", min=0, max=1)] = 0.5,
    heldout_fraction: Annotated[
        float, Opt(help="Share of the unknown entities held out of training.", min=0, max=1)
    ] = 0.5,
    fresh_entities: Annotated[int, Opt(help="Entities of the fresh world (test-fresh).", min=0)] = 20,
    fresh_seed: Annotated[int | None, Opt(help="Seed of the fresh world (default: seed + 1).")] = None,
    stream: Annotated[int, Opt(help="Generated, never-repeating training entities.", min=0)] = 0,
    web_pages: Annotated[int, Opt(help="Web pages showing each entity's picture.", min=0, max=4)] = 2,
    train_views: Annotated[int, Opt(help="Views per known/unknown entity in train.", min=1)] = 8,
    test_views: Annotated[int, Opt(help="Views per entity in the test splits.", min=1)] = 2,
    stream_views: Annotated[int, Opt(help="Views per stream entity.", min=1)] = 1,
    places: Annotated[int | None, Opt(help="Places per world (default: entities // 8, at least 4).")] = None,
    kind: Annotated[list[str] | None, Opt(help="Entity kinds (repeat; default: all).")] = None,
    index: Annotated[bool, Opt(help="Build the local search index of the corpus.")] = True,
    overwrite: Annotated[bool, Opt(help="Replace a world already in OUT.")] = False,
) -> None:
    """Write a world: OUT/corpus (the local index format), OUT/questions/<split>.jsonl, OUT/world.json."""
    from mmsr_bench.world.build import build_world
    from mmsr_bench.world.entities import KINDS
    from mmsr_bench.world.plan import WorldConfig

    try:
        config = WorldConfig(
            seed=seed,
            entities=entities,
            known_fraction=known_fraction,
            heldout_fraction=heldout_fraction,
            fresh_entities=fresh_entities,
            fresh_seed=fresh_seed,
            stream=stream,
            web_pages=web_pages,
            train_views=train_views,
            test_views=test_views,
            stream_views=stream_views,
            places=places,
            kinds=tuple(kind or KINDS),
        )
        manifest = build_world(out, config, index=index, overwrite=overwrite, progress=True)
    except (ValueError, FileExistsError) as exc:
        raise typer.BadParameter(str(exc)) from exc
    groups = ", ".join(f"{n} {group}" for group, n in manifest["groups"].items())
    typer.echo(f"world written to {out}: {groups} entities")
    for split, n in manifest["questions"].items():
        typer.echo(f"  {out / 'questions' / (split + '.jsonl')}: {n} questions")
