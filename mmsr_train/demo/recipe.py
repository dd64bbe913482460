"""The demo recipe's stages: world, SFT (values, then the decision), GRPO, end of turn."""

from __future__ import annotations

import json
import math
import random
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from mmsr_bench.world.questions import Question
from mmsr_serve.agent.protocol import SearchMode
from mmsr_train.demo.config import DemoConfig
from mmsr_train.demo.examples import (
    DEMO_PACK,
    IMAGE_PIXELS,
    REASON_TAGS,
    VALUE_TAGS,
    Example,
    LazyPool,
    collate,
    encode_example,
    end_of_turn_labels,
    first_turn,
    value_weights,
    weighted_loss,
)


def log(out: Path, message: str) -> None:
    line = f"[{time.strftime('%H:%M:%S')}] {message}"
    print(line, flush=True)
    with (out / "train.log").open("a", encoding="utf-8") as fh:
        fh.write(line + "\n")


def build_demo_world(folder: Path, seed: int, stream: int) -> Path:
    from mmsr_bench.world import WorldConfig, build_world

    if not (folder / "world.json").is_file():
        build_world(folder, WorldConfig(seed=seed, stream=stream), progress=True)
    return folder


def train_sft_demo(
    model_dir: Path,
    world: Path,
    out_dir: Path,
    config: DemoConfig,
    seconds: float,
    constant_lr: float | None = None,
    first_turns: float | None = None,
) -> Path:
    """Teacher-forced SFT on gold trajectories for ``seconds``; save a servable checkpoint.

    The learning rate warms up, then follows a cosine to 10% over ``seconds``; with
    ``constant_lr`` it is that value throughout (a continuation stage). A ``first_turns`` share
    (default ``config.first_turns``) of the batches are :func:`first_turn` cuts, half of known
    entities and half of others, their reasoning weighted like the values."""
    import torch
    from transformers import AutoModelForImageTextToText

    from mmsr_bench.world import read_questions
    from mmsr_serve.backends.hf_core import load_processor
    from mmsr_serve.config import AgentConfig
    from mmsr_train.checkpoint import save_checkpoint
    from mmsr_train.rollout import TRAINING_LIMITS, RolloutEnv, build_tools

    root = Path(config.out)
    model = AutoModelForImageTextToText.from_pretrained(model_dir, dtype=torch.float32)
    processor = load_processor(str(model_dir))
    env = RolloutEnv(build_tools(AgentConfig(index=world / "corpus")), TRAINING_LIMITS, DEMO_PACK)
    train = read_questions(world / "questions" / "train.jsonl")
    stream_file = world / "questions" / "stream.jsonl"
    stream = read_questions(stream_file) if stream_file.is_file() else []

    tags = [t for pair in VALUE_TAGS for t in pair] + list(REASON_TAGS)
    tag_ids = {t: processor.tokenizer.convert_tokens_to_ids(t) for t in tags}
    if len(set(tag_ids.values())) != len(tag_ids) or processor.tokenizer.unk_token_id in tag_ids.values():
        raise ValueError(f"the tokenizer has no single token for each of {list(tag_ids)}")
    weighted = config.value_weight != 1.0 or config.reason_weight != 1.0

    def encode(q: Question, mode: SearchMode = "auto") -> Example:
        example = encode_example(q, processor, env, mode)
        if not weighted:
            return example
        return replace(
            example, weights=value_weights(example, tag_ids, config.value_weight, config.reason_weight)
        )

    def encode_always(q: Question) -> Example:
        return encode(q, "always")

    pools = {
        "known": LazyPool([q for q in train if q.known], encode),
        "unknown": LazyPool([q for q in train if not q.known], encode),
        "stream": LazyPool(stream, encode),
        "always": LazyPool(train + stream, encode_always),
    }
    rng = random.Random(config.seed)
    torch.manual_seed(config.seed)
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=config.learning_rate, betas=(0.9, 0.98), weight_decay=0.01
    )
    pad_id = processor.tokenizer.pad_token_id
    image_token_id = model.config.image_token_id
    merge = model.config.vision_config.spatial_merge_size
    first_turns = config.first_turns if first_turns is None else first_turns
    decision_weight = max(config.reason_weight, config.value_weight)

    cuts: dict[int, Example] = {}  # by id() of the pools' cached examples, which live to the end

    def cut(example: Example) -> Example:
        if id(example) not in cuts:
            short = first_turn(example, image_token_id, merge)
            if weighted:
                short.weights = value_weights(short, tag_ids, config.value_weight, decision_weight)
            cuts[id(example)] = short
        return cuts[id(example)]

    model.train()
    start, step, seen, ema = time.monotonic(), 0, 0, None
    while (elapsed := time.monotonic() - start) < seconds:
        progress = elapsed / seconds
        warm = min(1.0, (step + 1) / config.warmup_steps)
        lr = config.learning_rate * warm * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))
        lr = lr if constant_lr is None else constant_lr
        for group in optimizer.param_groups:
            group["lr"] = lr
        short = bool(first_turns) and rng.random() < first_turns
        if not short and config.always_share and rng.random() < config.always_share:
            name = "always"
        elif rng.random() < (0.5 if short else config.known_share):
            name = "known"
        else:
            name = "stream" if pools["stream"].questions and rng.random() < config.stream_share else "unknown"
        examples = pools[name].sample(rng, config.batch_size)
        if short:
            examples = [cut(e) for e in examples]
        batch = collate(examples, pad_id, image_token_id)
        weights = batch.pop("weights", None)
        if weights is None:
            loss = model(**batch).loss
        else:
            labels = batch.pop("labels")
            loss = weighted_loss(model(**batch).logits, labels, weights)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        step += 1
        seen += batch["input_ids"].shape[0]
        value = float(loss.detach())
        ema = value if ema is None else 0.98 * ema + 0.02 * value
        if step % 50 == 0:
            cached = sum(len(p.cache) for p in pools.values())
            log(
                root,
                f"sft step {step} ({elapsed / 60:.1f} min): loss {ema:.4f}, lr {lr:.2e}, "
                f"{seen} sequences, {cached} encoded",
            )
    model.eval()
    save_checkpoint(model, processor, DEMO_PACK, out_dir)
    log(root, f"sft done: {step} steps, {seen} sequences in {(time.monotonic() - start) / 60:.1f} min")
    return out_dir


def teach_end_of_turn(
    folder: Path, world: Path, config: DemoConfig, steps: int = 80, lr: float = 3e-4
) -> Path:
    """A few SFT steps that also teach the end-of-turn token (:func:`end_of_turn_labels`), saved
    over ``folder``: the last stage of the recipe, applied to the SFT and the GRPO checkpoints."""
    import torch
    from transformers import AutoModelForImageTextToText

    from mmsr_bench.world import read_questions
    from mmsr_serve.backends.hf_core import load_processor
    from mmsr_serve.config import AgentConfig
    from mmsr_train.checkpoint import save_checkpoint
    from mmsr_train.rollout import TRAINING_LIMITS, RolloutEnv, build_tools

    model = AutoModelForImageTextToText.from_pretrained(folder, dtype=torch.float32)
    processor = load_processor(str(folder))
    env = RolloutEnv(build_tools(AgentConfig(index=world / "corpus")), TRAINING_LIMITS, DEMO_PACK)
    end_id = processor.tokenizer.convert_tokens_to_ids("<|im_end|>")
    rng = random.Random(config.seed)
    questions = rng.sample(read_questions(world / "questions" / "train.jsonl"), 128)
    stream = world / "questions" / "stream.jsonl"
    if stream.is_file():
        questions += rng.sample(read_questions(stream), 128)
    pool = [end_of_turn_labels(encode_example(q, processor, env), end_id) for q in questions]
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, betas=(0.9, 0.98), weight_decay=0.0)
    model.train()
    for step in range(steps):
        batch = collate(
            rng.sample(pool, config.batch_size), processor.tokenizer.pad_token_id, model.config.image_token_id
        )
        loss = model(**batch).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        if step % 20 == 0 or step == steps - 1:
            log(Path(config.out), f"end-of-turn {folder.name} step {step}: loss {float(loss.detach()):.4f}")
    model.eval()
    save_checkpoint(model, processor, DEMO_PACK, folder)
    return folder


def grpo_data(world: Path, out: Path, seed: int, size: int = 4000, known_share: float | None = None) -> Path:
    """A GRPO question mix of the train split and the stream, shuffled: with ``known_share``,
    that share of ``size`` on known entities, capped at the known questions the train split holds
    (the rest fills up with other entities); with ``None``, the rows as they come."""
    rows: list[dict[str, Any]] = []
    for name in ("train", "stream"):
        path = world / "questions" / f"{name}.jsonl"
        if path.is_file():
            for line in path.read_text(encoding="utf-8").splitlines():
                row = json.loads(line)
                row["image"] = str((path.parent / row["image"]).resolve())
                rows.append(row)
    rng = random.Random(seed)
    if known_share is not None:
        known = [r for r in rows if r.get("known")]
        other = [r for r in rows if not r.get("known")]
        rng.shuffle(known)
        rng.shuffle(other)
        take = min(len(known), round(size * known_share))
        rows = known[:take] + other[: size - take]
    rng.shuffle(rows)
    out.write_text("".join(json.dumps(r) + "\n" for r in rows[:size]), encoding="utf-8")
    return out


def train_grpo_demo(sft_dir: Path, world: Path, out_dir: Path, config: DemoConfig, seconds: float) -> Path:
    """GRPO from the SFT checkpoint until ``seconds`` have passed (checked after each step)."""
    from transformers import TrainerCallback

    from mmsr_serve.config import AgentConfig
    from mmsr_train.config import GRPORunConfig
    from mmsr_train.grpo import train_grpo

    root = Path(config.out)
    pack_file = DEMO_PACK.save(root / "demo_pack.json")
    start = time.monotonic()

    class _Budget(TrainerCallback):
        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> Any:
            if time.monotonic() - start > seconds:
                control.should_training_stop = True
            return control

        def on_log(self, args: Any, state: Any, control: Any, logs: Any = None, **kwargs: Any) -> None:
            keys = ("reward", "reward/accuracy", "search/ratio", "turns/mean", "loss")
            shown = {k: round(float(v), 4) for k, v in (logs or {}).items() if k in keys}
            log(root, f"grpo step {state.global_step} ({(time.monotonic() - start) / 60:.1f} min): {shown}")

    run = GRPORunConfig(
        model=str(sft_dir),
        train_data=str(
            grpo_data(world, root / "grpo_questions.jsonl", config.seed, known_share=config.grpo_known_share)
        ),
        output_dir=str(out_dir),
        agent=AgentConfig(index=world / "corpus", prompt_pack=pack_file, max_tokens=32, max_total_tokens=512),
        num_generations=config.grpo_generations,
        prompts_per_device=config.grpo_prompts,
        learning_rate=config.grpo_learning_rate,
        max_steps=config.grpo_max_steps,
        lr_schedule="constant_with_warmup",  # tens of steps: the release's decay would sit at its floor
        warmup_ratio=0.05,
        weight_decay=0.0,  # as the demo was trained (TRL's default then)
        save_steps=100_000,
        logging_steps=1,
        device="cpu",
        seed=config.seed,
    )
    summary = train_grpo(run, callbacks=[_Budget()])
    log(root, f"grpo done: {summary.steps} steps in {(time.monotonic() - start) / 60:.1f} min")
    return out_dir


def run_demo(config: DemoConfig) -> Path:
    """The whole recipe; returns the final checkpoint folder."""
    import torch

    from mmsr_train.tiny_model import build_tiny_qwen2_5_vl

    torch.set_num_threads(config.threads)
    root = Path(config.out)
    root.mkdir(parents=True, exist_ok=True)
    (root / "demo_config.json").write_text(json.dumps(asdict(config), indent=2) + "\n", encoding="utf-8")
    t0 = time.monotonic()
    world = (
        Path(config.world) if config.world else build_demo_world(root / "world", config.seed, config.stream)
    )
    log(root, f"world ready at {world} ({time.monotonic() - t0:.0f} s)")
    init = (
        Path(config.init)
        if config.init
        else build_tiny_qwen2_5_vl(
            root / "init",
            seed=config.seed,
            max_pixels=IMAGE_PIXELS,
        )
    )
    budget = config.minutes * 60
    decision_seconds = config.decision_minutes * 60
    sft_seconds = budget * (1 - config.grpo_share) - decision_seconds
    if decision_seconds > 0:
        values = train_sft_demo(init, world, root / "sft-values", config, sft_seconds)
        stage = replace(config, reason_weight=config.value_weight)
        sft = train_sft_demo(
            values,
            world,
            root / "sft",
            stage,
            decision_seconds,
            constant_lr=config.decision_learning_rate,
            first_turns=config.decision_first_turns,
        )
    else:
        sft = train_sft_demo(init, world, root / "sft", config, sft_seconds)
    final = sft
    if config.grpo_share > 0:
        remaining = budget - (time.monotonic() - t0)
        final = train_grpo_demo(sft, world, root / "grpo", config, max(60.0, remaining))
    # Last: both checkpoints learn to end a plain (unprotocolled) turn; GRPO started before this.
    for folder in dict.fromkeys([sft, final]):
        teach_end_of_turn(folder, world, config)
    return final
