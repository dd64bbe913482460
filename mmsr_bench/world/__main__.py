"""``python -m mmsr_bench.world build OUT ...``: the ``mmsr world`` command group."""

import typer.main

from mmsr_bench.world.cli import app

typer.main.get_group(app)(prog_name="mmsr world")
