"""Checkpoints that serve: weights + processor + the prompt pack used in training, in one folder.

``mmsr serve --backend hf --model CKPT`` loads the pack saved here (:data:`PACK_FILE`, one of the
names the server looks for next to an ``hf`` checkpoint) with no extra flag; ``vllm serve CKPT``
reads the weights, tokenizer and processor files, which name only upstream classes.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from mmsr_serve.agent.prompts import CHECKPOINT_PACK_FILES, PromptPack

PACK_FILE = CHECKPOINT_PACK_FILES[0]


def save_pack(pack: PromptPack, folder: str | os.PathLike[str]) -> Path:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    return pack.save(folder / PACK_FILE)


def save_checkpoint(model: Any, processor: Any, pack: PromptPack, folder: str | os.PathLike[str]) -> Path:
    """Write a servable checkpoint folder outside a trainer (a trainer's saves do the same)."""
    folder = Path(folder)
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    save_pack(pack, folder)
    return folder
