"""``mmsr pack``: prompt packs (every text the model reads, and how its checkpoint takes turns).

    mmsr pack import-release CHECKOUT release.json   a pack from the official release's checkout
    mmsr pack chat-template CKPT glue.jinja          its chat template without a newline after turns
    mmsr pack show [PACK]                            a pack as JSON (default: this project's)

Serve the released checkpoint with the imported pack: ``mmsr serve --prompt-pack release.json``
(docs/official-checkpoint.md).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from mmsr_serve.errors import ConfigError

pack_app = typer.Typer(help="Prompt packs: import the official release's, show one.", no_args_is_help=True)


@pack_app.command("import-release")
def import_release_command(
    checkout: Annotated[Path, typer.Argument(help="A clone of EvolvingLMMs-Lab/multimodal-search-r1.")],
    out: Annotated[Path, typer.Argument(help="The pack file to write (JSON).")],
) -> None:
    """Build a pack from the release's prompts, rollout and tools (read from CHECKOUT, not copied
    into mmsr): its results-turn layout, its turn-taking and its image sizes."""
    from mmsr_serve.agent.release import import_release

    try:
        pack = import_release(checkout)
    except ConfigError as exc:
        raise typer.BadParameter(str(exc), param_hint="CHECKOUT") from exc
    pack.save(out)
    typer.echo(f"wrote {out}: serve with  mmsr serve --prompt-pack {out} ...")


@pack_app.command("show")
def show(
    pack: Annotated[Path | None, typer.Argument(help="A pack file (default: this project's pack).")] = None,
) -> None:
    """Print a pack, every key filled in (a file's missing keys come from the default)."""
    from mmsr_serve.agent.prompts import default_pack, load_pack

    try:
        loaded = load_pack(pack) if pack is not None else default_pack()
    except ConfigError as exc:
        raise typer.BadParameter(str(exc), param_hint="PACK") from exc
    typer.echo(json.dumps(loaded.to_dict(), indent=2, ensure_ascii=False))


@pack_app.command("chat-template")
def chat_template(
    checkpoint: Annotated[Path, typer.Argument(help="The checkpoint folder (its chat template is read).")],
    out: Annotated[Path, typer.Argument(help="The template to write (.jinja).")],
) -> None:
    """Write the checkpoint's chat template with nothing after an assistant turn's <|im_end|>, as the
    release's rollout had it; serve with `vllm serve CHECKPOINT --chat-template OUT`."""
    from mmsr_serve.agent.glue import checkpoint_template, release_glue

    try:
        template = release_glue(checkpoint_template(checkpoint))
    except ConfigError as exc:
        raise typer.BadParameter(str(exc), param_hint="CHECKPOINT") from exc
    out.write_text(template, encoding="utf-8")
    typer.echo(f"wrote {out}: vllm serve {checkpoint} --chat-template {out} ...")
