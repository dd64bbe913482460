"""Checkpoints that serve: weights + processor + the prompt pack and agent configuration used in
training, in one folder.

``mmsr serve --backend hf --model CKPT`` loads the pack saved here (:data:`PACK_FILE`, one of the
names the server looks for next to an ``hf`` checkpoint) and starts from the limits and image sizes
of the recorded agent configuration (:data:`~mmsr_serve.config.RECORD_FILE`) with no extra flag;
``vllm serve CKPT`` reads the weights, tokenizer and processor files, which name only upstream
classes (give the gateway the record with ``mmsr serve --config CKPT/mmsr_agent.json``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from mmsr_serve.agent.prompts import CHECKPOINT_PACK_FILES, PromptPack
from mmsr_serve.config import AgentConfig

PACK_FILE = CHECKPOINT_PACK_FILES[0]


def save_pack(pack: PromptPack, folder: str | os.PathLike[str]) -> Path:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    return pack.save(folder / PACK_FILE)


def save_serving_files(folder: str | os.PathLike[str], pack: PromptPack, agent: AgentConfig | None) -> None:
    """The pack and (when known) the agent configuration, next to weights a trainer saved."""
    save_pack(pack, folder)
    if agent is not None:
        agent.save_record(folder)


def save_checkpoint(model: Any, processor: Any, pack: PromptPack, folder: str | os.PathLike[str]) -> Path:
    """Write a servable checkpoint folder outside a trainer (a trainer's saves do the same)."""
    folder = Path(folder)
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    save_pack(pack, folder)
    return folder
