"""The embedded default: a tiny searching checkpoint and the miniature world it was trained on.

``mmsr serve`` with no model configured serves :data:`CHECKPOINT` (this folder: weights, tokenizer,
processor and ``prompt_pack.json``, trained by ``mmsr train demo``; see its ``README.md``) with the
in-process ``hf`` backend, over the demo world's corpus (:func:`demo_world`), which is generated
from :data:`DEMO_WORLD_SEED` on first use into the cache folder (about 10 s) and reused afterwards.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path

from mmsr_serve.errors import ConfigError

CHECKPOINT = Path(__file__).resolve().parent
"""The packaged checkpoint folder (loads with ``--backend hf --model``)."""
SERVED_NAME = "mmsr-demo"
"""The model id clients see when the default is served."""
DEMO_WORLD_SEED = 0
"""The world the checkpoint was trained on (``mmsr world build OUT --seed 0``)."""


def cache_root(env: Mapping[str, str] | None = None) -> Path:
    """``$XDG_CACHE_HOME/mmsr`` (``~/.cache/mmsr`` without the variable)."""
    env = os.environ if env is None else env
    root = Path(env["XDG_CACHE_HOME"]) if env.get("XDG_CACHE_HOME") else Path.home() / ".cache"
    return root / "mmsr"


def demo_world_dir(env: Mapping[str, str] | None = None) -> Path:
    return cache_root(env) / "demo-world"


def demo_world(env: Mapping[str, str] | None = None, *, build: bool = True) -> Path:
    """The demo world's folder (``corpus/``, ``questions/``), generated first if missing."""
    folder = demo_world_dir(env)
    pending = start_demo_world(env) if build else None
    return pending.wait() if pending is not None else folder


def start_demo_world(env: Mapping[str, str] | None = None) -> DemoWorldBuild | None:
    """Start generating the demo world unless it is there already (then None).

    The world is built in a temporary folder next to its place and renamed into it by
    :meth:`DemoWorldBuild.wait`, so an interrupted build or two servers starting at once never
    leave half a world behind. The generator runs as ``mmsr world build`` in a child process
    (serving never imports it), so the caller can load the model meanwhile.
    """
    folder = demo_world_dir(env)
    if (folder / "world.json").is_file():
        return None
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".demo-world-", dir=folder.parent))
    command = [sys.executable, "-m", "mmsr_bench.world", "build", str(staging)]
    try:
        child = subprocess.Popen([*command, "--seed", str(DEMO_WORLD_SEED)], stdout=subprocess.DEVNULL)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return DemoWorldBuild(folder, staging, child)


class DemoWorldBuild:
    """The demo world being generated (:func:`start_demo_world`)."""

    def __init__(self, folder: Path, staging: Path, child: subprocess.Popen[bytes]) -> None:
        self.folder, self._staging, self._child = folder, staging, child

    def wait(self) -> Path:
        """The world's folder, once generated and in place; ConfigError if the generator failed."""
        try:
            code = self._child.wait()
            if code != 0:
                raise ConfigError(f"building the demo world into {self.folder} failed (exit {code})")
            try:
                self._staging.rename(self.folder)
            except OSError:
                if not (self.folder / "world.json").is_file():  # not another process's finished world
                    raise
        finally:
            shutil.rmtree(self._staging, ignore_errors=True)
        return self.folder

    def cancel(self) -> None:
        """Stop the generator and remove its half-built world."""
        self._child.kill()
        self._child.wait()
        shutil.rmtree(self._staging, ignore_errors=True)


def is_available() -> bool:
    """Whether the checkpoint's weights are installed (source trees without them still work)."""
    return (CHECKPOINT / "model.safetensors").is_file()
