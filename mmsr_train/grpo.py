"""GRPO training of a searching VLM: data, tools, reward and TRL's config, wired into one call.

    from mmsr_train.config import GRPORunConfig
    from mmsr_train.grpo import train_grpo
    config = GRPORunConfig.load(model="ckpt/", train_data="train.jsonl", output_dir="out/", index="corpus/")
    summary = train_grpo(config)

The trainer is :class:`~mmsr_train.trainer.SearchGRPOTrainer`; its checkpoints (``out/checkpoint-N``
and the final ``out/``) hold weights, processor and ``prompt_pack.json``, and load in
``mmsr serve --backend hf --model out/``.

Logged every step besides TRL's own metrics: the reward parts (``reward/accuracy``, ``reward/format``,
``reward/search_penalty``: the mean penalty factor of the correct answers), ``search/ratio`` (share of
trajectories with a search), ``search/image_calls``, ``search/text_calls`` and ``turns/mean``.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mmsr_bench.data import Sample, load_samples
from mmsr_serve.agent.loop import Sampling
from mmsr_serve.agent.parser import STOP_STRINGS
from mmsr_serve.errors import ConfigError
from mmsr_train.config import GRPORunConfig
from mmsr_train.reward import MatchMode, RewardCompat, score_trajectory
from mmsr_train.rollout import IMAGE_BYTES, RolloutEnv, Wrap
from mmsr_train.schedules import lr_lambda

RewardFunc = Callable[..., list[float]]


def make_reward_func(
    mode: MatchMode = "em",
    search_penalty: float = 0.1,
    format_weight: float = 0.1,
    per_search_penalty: bool = False,
    compat: RewardCompat = "mmsr",
) -> RewardFunc:
    """The paper's reward as a TRL reward function (it reads the rollouts' ``turns``)."""

    def mmsr_reward(
        turns: Sequence[Sequence[str]],
        ground_truth: Sequence[str],
        candidate_answers: Sequence[Sequence[str] | None],
        log_metric: Callable[[str, float], None] | None = None,
        log_extra: Callable[[str, list[Any]], None] | None = None,
        data_source: Sequence[str] | None = None,
        searches: Sequence[str] | None = None,
        finish_reason: Sequence[str] | None = None,
        **_: Any,
    ) -> list[float]:
        parts = [
            score_trajectory(t, g, c or (), mode, search_penalty, format_weight, per_search_penalty, compat)
            for t, g, c in zip(turns, ground_truth, candidate_answers, strict=True)
        ]
        if log_extra is not None:  # columns of TRL's completions table (log_trajectories)
            log_extra("ground_truth", list(ground_truth))
            log_extra("answer", [p.answer or "" for p in parts])
            log_extra("turns", [len(t) for t in turns])
            log_extra("searches", list(searches or [""] * len(parts)))
            log_extra("finish_reason", list(finish_reason or [""] * len(parts)))
            log_extra("accuracy", [p.accuracy for p in parts])
            log_extra("format", [p.format for p in parts])
            log_extra("search_penalty", [p.penalty for p in parts])
        if log_metric is not None and parts:
            log_metric("reward/accuracy", sum(p.accuracy for p in parts) / len(parts))
            log_metric("reward/format", sum(p.format for p in parts) / len(parts))
            correct = [p.penalty for p in parts if p.accuracy]
            log_metric("reward/search_penalty", sum(correct) / len(correct) if correct else 1.0)
            # accuracy per data source (FVQA-test's generated / InfoSeek / manual parts, say)
            for source in sorted({s for s in data_source or () if s}):
                mine = [p.accuracy for p, s in zip(parts, data_source or (), strict=True) if s == source]
                log_metric(f"reward/accuracy/{source}", sum(mine) / len(mine))
        return [p.reward for p in parts]

    return mmsr_reward


def to_trl_dataset(samples: Sequence[Sample]) -> Any:
    """A ``datasets.Dataset`` in TRL's conversational VLM layout (``prompt`` + ``image`` columns).

    The ``image_bytes`` column keeps each image's file bytes: the rollouts load the image from
    them as the server loads a user's upload (same decoding and orientation, and the same sha256,
    which keys image searches in the cache), not from the PIL image TRL decodes for the prompt."""
    from datasets import Dataset, Features, Image, List, Value

    with_images = any(s.image is not None for s in samples)
    rows = []
    for s in samples:
        row: dict[str, Any] = {
            "prompt": [{"role": "user", "content": s.question}],
            "ground_truth": s.ground_truth,
            "candidate_answers": s.candidate_answers,
            "id": s.id,
            "data_source": s.data_source,
        }
        if with_images:
            row["image"] = _image_cell(s)
            row[IMAGE_BYTES] = s.image_bytes()
        rows.append(row)
    features: dict[str, Any] = {
        "prompt": List({"role": Value("string"), "content": Value("string")}),
        "ground_truth": Value("string"),
        "candidate_answers": List(Value("string")),
        "id": Value("string"),
        "data_source": Value("string"),
    }
    if with_images:
        features["image"] = Image()
        features[IMAGE_BYTES] = Value("binary")
    return Dataset.from_list(rows, features=Features(features))


def _image_cell(sample: Sample) -> dict[str, Any] | None:
    if isinstance(sample.image, Path):
        return {"bytes": None, "path": str(sample.image)}
    return None if sample.image is None else {"bytes": sample.image, "path": None}


def split_eval(samples: list[Sample], fraction: float, seed: int) -> tuple[list[Sample], list[Sample]]:
    if fraction <= 0:
        return samples, []
    shuffled = samples[:]
    random.Random(seed).shuffle(shuffled)
    held = max(1, round(len(samples) * fraction))
    if held >= len(samples):
        raise ConfigError("eval_fraction leaves no training samples")
    return shuffled[held:], shuffled[:held]


def grpo_args(config: GRPORunConfig, *, has_eval: bool) -> Any:
    import torch
    from trl import GRPOConfig

    cuda = config.device == "cuda" or (config.device == "auto" and torch.cuda.is_available())
    bf16 = cuda if config.bf16 is None else config.bf16
    batch = config.prompts_per_device * config.num_generations
    named = config.lr_schedule == "constant_with_warmup"
    ours = dict(
        output_dir=config.output_dir,
        use_cpu=not cuda,
        bf16=bf16,
        learning_rate=config.learning_rate,
        weight_decay=config.weight_decay,
        # sigmoid_decay: the trainer's own schedule (SearchGRPOTrainer.create_scheduler); TRL's stays unused
        warmup_steps=config.warmup_ratio if named else 0,
        lr_scheduler_type="constant_with_warmup" if named else "constant",
        beta=config.beta,
        loss_type=config.loss_type,
        num_generations=config.num_generations,
        per_device_train_batch_size=batch,
        gradient_accumulation_steps=config.gradient_accumulation_steps,
        num_train_epochs=config.epochs,
        max_steps=config.max_steps,
        max_completion_length=config.agent.max_total_tokens,
        temperature=config.temperature,
        top_p=config.top_p,
        activation_checkpointing=config.gradient_checkpointing,
        use_vllm=config.use_vllm,
        vllm_mode=config.vllm_mode,
        vllm_server_base_url=config.vllm_server_base_url,
        vllm_gpu_memory_utilization=config.vllm_gpu_memory_utilization,
        generation_kwargs={"stop": list(STOP_STRINGS), "include_stop_str_in_output": True}
        if config.use_vllm
        else None,
        eval_strategy="steps" if has_eval else "no",
        eval_steps=config.eval_steps,
        eval_on_start=has_eval and config.eval_on_start,
        log_completions=config.log_trajectories,
        num_completions_to_print=4 if config.log_trajectories else None,
        per_device_eval_batch_size=batch,
        save_strategy="steps",
        save_steps=config.save_steps,
        logging_steps=config.logging_steps,
        report_to=[] if config.report_to == "none" else [config.report_to],
        seed=config.seed,
    )
    try:
        return GRPOConfig(**{**ours, **config.trl_args})  # TRL validates its own options
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"a TRL option was refused: {exc}") from exc


@dataclass(frozen=True)
class TrainSummary:
    output_dir: Path
    steps: int
    logs: dict[str, float]
    """The last logged training metrics."""
    final_eval: list[Any] = field(default_factory=list)
    """The table of the held-out questions in each search mode after training
    (:class:`mmsr_bench.eval.report.Row`s; empty without held-out questions)."""


def load_policy(path: str, bf16_weights: bool = False) -> tuple[Any, Any]:
    """The model and its processor. Its weights are float32, the optimiser's master copy, also for
    a bfloat16 run: the trainer's ``bf16`` computes in bfloat16 under autocast (as TRL loads a
    model itself). ``bf16_weights`` stores them in bfloat16 instead (half the memory; AdamW's small
    updates then mostly round away: 10 steps at 2e-6 changed 3.8% of the weights, 99.99% in fp32)."""
    import torch
    from transformers import AutoModelForImageTextToText

    from mmsr_serve.backends.hf_core import load_processor

    model = AutoModelForImageTextToText.from_pretrained(
        path, dtype=torch.bfloat16 if bf16_weights else torch.float32
    )
    return model, load_processor(path)


def build_trainer(config: GRPORunConfig, *, wrap: Wrap | None = None, callbacks: Sequence[Any] = ()) -> Any:
    from mmsr_train.trainer import SearchGRPOTrainer

    train = load_samples(config.train_data)
    if config.eval_data:
        held = load_samples(config.eval_data)
    else:
        train, held = split_eval(train, config.eval_fraction, config.seed)
    if config.eval_max_samples is not None and len(held) > config.eval_max_samples:
        held = random.Random(config.seed).sample(held, config.eval_max_samples)
    args = grpo_args(config, has_eval=bool(held))
    model, processor = load_policy(config.model, config.bf16_weights)
    env = RolloutEnv.from_config(
        config.agent,
        sampling=Sampling(temperature=config.temperature, top_p=config.top_p),
    )
    reward = make_reward_func(
        config.reward_mode,
        config.search_penalty,
        config.format_weight,
        config.per_search_penalty,
        config.reward_compat,
    )
    return SearchGRPOTrainer(
        model=model,
        reward_funcs=[reward],
        args=args,
        train_dataset=to_trl_dataset(train),
        eval_dataset=to_trl_dataset(held) if held else None,
        processing_class=processor,
        callbacks=list(callbacks),
        env=env,
        wrap=wrap,
        eval_greedy=config.eval_greedy,
        held_out=held,
        lr_lambda=None
        if "lr_scheduler_type" in config.trl_args  # TRL's own named schedule, asked for by name
        else lr_lambda(config.lr_schedule, midpoint=config.lr_decay_midpoint, floor=config.lr_decay_floor),
    )


def train_grpo(
    config: GRPORunConfig,
    *,
    wrap: Wrap | None = None,
    callbacks: Sequence[Any] = (),
    resume_from_checkpoint: str | bool | None = None,
) -> TrainSummary:
    """Train, save the final checkpoint to ``config.output_dir`` and return a summary.

    With held-out questions, the final checkpoint is then evaluated in ``final_eval_modes``
    (:mod:`mmsr_train.final_eval`). The run's configuration is written to
    ``output_dir/mmsr_run_config.json`` before the first step (a run that dies still says how it
    was started). ``resume_from_checkpoint``: a ``checkpoint-N`` folder, or True for the latest
    one in ``output_dir`` (TRL's resume: model, optimiser, schedule, RNG and data order)."""
    import json

    out = Path(config.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "mmsr_run_config.json").write_text(json.dumps(config.to_dict(), indent=2) + "\n", encoding="utf-8")
    trainer = build_trainer(config, wrap=wrap, callbacks=callbacks)
    trainer.train(resume_from_checkpoint=resume_from_checkpoint)
    trainer.save_model(config.output_dir)
    logs = [entry for entry in trainer.state.log_history if "loss" in entry]
    rows: list[Any] = []
    if trainer.held_out and config.final_eval_modes:
        from mmsr_train.final_eval import run_final_eval

        greedy, modes = config.eval_greedy, config.final_eval_modes
        rows = run_final_eval(trainer, trainer.held_out, modes, out, match=config.reward_mode, greedy=greedy)
    return TrainSummary(out, trainer.state.global_step, dict(logs[-1]) if logs else {}, rows)
