"""SFT warm start on trajectories written in our protocol, with the masking GRPO uses.

Data: JSONL, one trajectory a line: ``{"image": "path", "question": "...", "turns": ["<reason>...</reason>
<search><img></search>", "...", "<reason>...</reason><answer>...</answer>"]}`` (``image`` optional,
relative to the file; ``"mode": "always"`` for a RAG-workflow trajectory, whose image search the
loop runs before the first turn). Only the model turns are written down: each trajectory is replayed through
the serving loop (:func:`mmsr_train.rollout.run_rollout`) with a :class:`TeacherGenerator` that
"samples" the given turns, so the search results between them come from the same tools, pack and
rendering as in serving and GRPO, and the token sequence and its mask are built by the same
:class:`~mmsr_train.policy.PolicyBackend`. The loss covers the model turns only (``env_mask`` 1);
prompt and environment tokens are labelled -100.

Training runs on TRL's ``SFTTrainer`` with a collator for these pre-tokenised examples; checkpoints
carry the prompt pack like GRPO's.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm import tqdm  # type: ignore[import-untyped]

from mmsr_bench.data import DataError, jsonl_rows
from mmsr_serve.agent.parser import check_trajectory
from mmsr_serve.agent.protocol import SearchMode
from mmsr_serve.backends.hf_core import image_token_types
from mmsr_serve.config import AgentConfig
from mmsr_train.checkpoint import save_serving_files
from mmsr_train.generators import TeacherGenerator
from mmsr_train.rollout import RolloutEnv, RolloutTask, run_rollout, run_sync


@dataclass(frozen=True)
class Trajectory:
    question: str
    turns: tuple[str, ...]
    image: Path | None = None
    id: str = ""
    mode: SearchMode = "auto"
    """``always``: the RAG workflow, where the loop runs the image search before the first turn,
    so ``turns`` start with the model's text search."""


def load_trajectories(path: str | os.PathLike[str]) -> list[Trajectory]:
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    out = []
    for number, where, row in jsonl_rows(path):
        question, turns = row.get("question"), row.get("turns")
        if not isinstance(question, str) or not question.strip():
            raise DataError(f"{where}: 'question' must be a non-empty string")
        if not isinstance(turns, list) or not all(isinstance(t, str) for t in turns):
            raise DataError(f"{where}: 'turns' must be a list of model turn texts")
        check = check_trajectory(turns)
        if not check.valid:
            raise DataError(f"{where}: not a valid trajectory: {check.reason}")
        image = None
        if row.get("image") is not None:
            image = (path.parent / str(row["image"])).resolve()
            if not image.is_file():
                raise DataError(f"{where}: image file not found: {image}")
        mode = row.get("mode", "auto")
        if mode not in ("auto", "always"):
            raise DataError(f"{where}: 'mode' must be 'auto' or 'always', not {mode!r}")
        out.append(Trajectory(question.strip(), tuple(turns), image, str(row.get("id") or number), mode))
    if not out:
        raise DataError(f"{path}: no trajectories")
    return out


def build_example(trajectory: Trajectory, processor: Any, env: RolloutEnv) -> dict[str, Any]:
    """Replay one trajectory through the loop; its ids, labels (-100 off the model turns) and images."""
    teacher = TeacherGenerator(processor.tokenizer, trajectory.turns)
    task = RolloutTask(trajectory.question, trajectory.image, trajectory.mode)
    rollout = run_sync(lambda: run_rollout(task, teacher, processor, env))
    if rollout.turns != list(trajectory.turns):
        raise DataError(
            f"trajectory {trajectory.id!r}: the loop ended after {len(rollout.turns)} of "
            f"{len(trajectory.turns)} turns ({rollout.result.finish_reason}); "
            "check the search limits and token budget"
        )
    trace = rollout.trace
    labels = [-100] * len(trace.prompt_ids)
    labels += [t if m else -100 for t, m in zip(trace.completion_ids, trace.env_mask, strict=True)]
    return {"input_ids": trace.token_ids, "labels": labels, "images": list(trace.images)}


def pad_batch(ids: Sequence[Sequence[int]], labels: Sequence[Sequence[int]], pad_id: int) -> dict[str, Any]:
    """Right-padded ``input_ids``, ``attention_mask`` and ``labels`` (-100 on the padding) tensors."""
    import torch

    width = max(len(row) for row in ids)
    batch = {
        "input_ids": torch.full((len(ids), width), pad_id, dtype=torch.long),
        "attention_mask": torch.zeros((len(ids), width), dtype=torch.long),
        "labels": torch.full((len(ids), width), -100, dtype=torch.long),
    }
    for i, (row, row_labels) in enumerate(zip(ids, labels, strict=True)):
        batch["input_ids"][i, : len(row)] = torch.tensor(row)
        batch["attention_mask"][i, : len(row)] = 1
        batch["labels"][i, : len(row_labels)] = torch.tensor(row_labels)
    return batch


class TrajectoryCollator:
    """Right-pad pre-tokenised examples and add the image inputs (pixel values, grids, token types)."""

    def __init__(self, processor: Any, image_token_id: int) -> None:
        self.processor = processor
        self.pad_id: int = processor.tokenizer.pad_token_id
        self.image_token_id = image_token_id

    def __call__(self, rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
        batch = pad_batch([r["input_ids"] for r in rows], [r["labels"] for r in rows], self.pad_id)
        ids = batch["input_ids"]
        images = [image for row in rows for image in row["images"]]
        if images:
            pixels = self.processor.image_processor(images=images, return_tensors="pt")
            batch.update(pixel_values=pixels["pixel_values"], image_grid_thw=pixels["image_grid_thw"])
            batch["mm_token_type_ids"] = image_token_types(ids, self.image_token_id)
        return batch


def examples_dataset(examples: Sequence[dict[str, Any]]) -> Any:
    """The examples as a ``datasets.Dataset`` (images stored losslessly as PNG, decoded on access)."""
    from datasets import Dataset, Features, Image, List, Value

    features = Features(
        {"input_ids": List(Value("int64")), "labels": List(Value("int64")), "images": List(Image())}
    )
    return Dataset.from_list(list(examples), features=features)


@dataclass
class SFTRunConfig:
    model: str
    data: str
    output_dir: str
    agent: AgentConfig = field(default_factory=lambda: AgentConfig())
    """The search tools that answer the trajectories' searches, the limits and the prompt pack
    (the serving configuration, :class:`~mmsr_serve.config.AgentConfig`)."""
    learning_rate: float = 1e-5
    epochs: float = 1.0
    max_steps: int = -1
    batch_size: int = 1
    gradient_accumulation_steps: int = 1
    device: str = "auto"
    bf16: bool | None = None
    save_steps: int = 500
    logging_steps: int = 1
    seed: int = 0


def train_sft(config: SFTRunConfig) -> Any:
    """Build the examples, train with ``SFTTrainer``, save a servable checkpoint; return the summary."""
    import torch
    from trl import SFTConfig, SFTTrainer

    from mmsr_train.grpo import TrainSummary, load_policy

    cuda = config.device == "cuda" or (config.device == "auto" and torch.cuda.is_available())
    bf16 = cuda if config.bf16 is None else config.bf16
    model, processor = load_policy(config.model)
    env = RolloutEnv.from_config(config.agent)
    pack = env.prompt_pack
    trajectories = load_trajectories(config.data)
    examples = [build_example(t, processor, env) for t in tqdm(trajectories, desc="replaying trajectories")]
    args = SFTConfig(
        output_dir=config.output_dir,
        use_cpu=not cuda,
        bf16=bf16,
        learning_rate=config.learning_rate,
        num_train_epochs=config.epochs,
        max_steps=config.max_steps,
        per_device_train_batch_size=config.batch_size,
        gradient_accumulation_steps=config.gradient_accumulation_steps,
        max_length=None,
        activation_checkpointing=False,
        remove_unused_columns=False,
        dataset_kwargs={"skip_prepare_dataset": True},
        save_steps=config.save_steps,
        logging_steps=config.logging_steps,
        report_to=[],
        seed=config.seed,
    )

    class _Trainer(SFTTrainer):
        def save_model(self, output_dir: str | None = None, _internal_call: bool = False) -> None:
            super().save_model(output_dir, _internal_call)
            if self.args.should_save:
                save_serving_files(output_dir or str(self.args.output_dir), pack, config.agent)

    trainer = _Trainer(
        model=model,
        args=args,
        train_dataset=examples_dataset(examples),
        processing_class=processor,
        data_collator=TrajectoryCollator(processor, model.config.image_token_id),
    )
    trainer.train()
    trainer.save_model(config.output_dir)
    logs = [entry for entry in trainer.state.log_history if "loss" in entry]
    return TrainSummary(Path(config.output_dir), trainer.state.global_step, dict(logs[-1]) if logs else {})
