"""``mmsr train demo``: the embedded default model, from nothing, on 2 CPU cores in under an hour.

The recipe (choices from earlier measurements of tiny Qwen2.5-VL training on this machine class):

1. **World**: the miniature world (docs/world.md) of ``--seed``, with ``--stream`` never-repeating
   generated entities, so that copying a name into the query and a value out of the results is
   learned rather than memorised.
2. **Tiny model**: :func:`mmsr_train.tiny_model.build_tiny_qwen2_5_vl` (128 wide, 4 layers; vision
   64 wide, 2 layers), the syllable tokenizer, images at most 84x84 pixels (9 image tokens; search
   thumbnails too), and :data:`DEMO_PACK`, a prompt pack short enough for a model this small.
3. **SFT warm start** on protocol trajectories in the world: known entities answered directly,
   every other entity by image search, then a text search for ``<name> <field>``, then the value.
   The sequences are built by replaying each trajectory through the serving loop
   (:func:`mmsr_train.sft.build_example`: :class:`~mmsr_train.generators.TeacherGenerator` behind a
   :class:`~mmsr_train.policy.PolicyBackend`), so prompts, search results and loss masks are
   exactly GRPO's and serving's. The optimisation is a plain PyTorch teacher-forced loop rather
   than TRL's ``SFTTrainer``: with ~200-token sequences the trainer's per-step overhead (dataset
   decoding, image preprocessing per batch) costs more than the tiny model's forward pass, and the
   loop pre-computes pixel values once and batches sequences of one kind together.
   The tokens of the text-search query and of the answer weigh ``value_weight`` (8) in the loss:
   copying a value out of the results is the slowest skill and is learned only when those tokens
   dominate; 15% of batches are RAG-workflow (``always`` mode) trajectories.
3b. **Decision stage**: ``decision_minutes`` more SFT from that checkpoint with the reasoning (the
   search decision) weighted like the values, at a constant learning rate: the values-first
   stage lets the decision drift, and weighting the reasoning from the start taught no copying.
4. **GRPO** with the paper's reward and search penalty (:func:`mmsr_train.grpo.train_grpo`, TRL's
   GRPO through the serving loop) from the SFT checkpoint, for the rest of the time budget.
5. **End of turn**: 80 more SFT steps on each checkpoint with the ``<|im_end|>`` after every
   model turn as a target too (:func:`teach_end_of_turn`): protocol turns stop on their closing
   tags, but a plain turn (search mode ``off``) must end on the model's own end-of-turn token.

6. **Continuing a checkpoint** (``init``, the default model's second phase): the same stages from
   an earlier demo checkpoint, with ``first_turns`` of the SFT batches cut after the first turn
   (:func:`first_turn`: the search decision, or a known entity's answer, at a fifth of a search
   trajectory's length) and ``grpo_known_share`` of the GRPO questions on known entities. From
   scratch such cuts taught the decision but starved the reading; on a checkpoint that already
   reads they add the decision and keep the reading (docs/demo.md has the figures).

The SFT checkpoint is written to ``OUT/sft`` and the final one to ``OUT/grpo``; each is servable
(``mmsr serve --backend hf --model OUT/grpo``) and carries the pack.
"""

from __future__ import annotations

import json
import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from mmsr_bench.world.questions import Question
from mmsr_serve.agent.prompts import PromptPack
from mmsr_serve.agent.protocol import ANSWER, REASON, TEXT_SEARCH, SearchMode
from mmsr_serve.backends.hf_core import image_token_types

DEMO_PACK = PromptPack(
    name="mmsr-demo",
    first_turn="<image>{question}",
    first_turn_text_only="{question}",
    results_message="<information>{results}</information>{follow_up}",
    after_image_search="",
    after_text_search="",
    image_result="{title}",
    text_result="{text}",
    no_results="no results",
    search_failed="search failed",
    search_refused="no more {kind} search",
    format_reminder="use the format",
    text_search_required="search the web first",
)
"""A prompt pack for a model with a 1-token-per-byte vocabulary: every token of it is paid for in
each training sequence. The protocol is learned from the trajectories, not read from the prompt."""

IMAGE_PIXELS = 84 * 84
"""Largest image the demo model's processor keeps (9 image tokens); thumbnails are resized too."""


def gold_turns(question: Question, mode: SearchMode = "auto") -> list[str]:
    """The protocol trajectory a good policy writes: known facts directly, the rest by searching.

    In the ``always`` mode (the RAG workflow) the loop has run the image search before the first
    turn, so every question goes on with the text search, known entities too."""
    answer = question.answers[0]
    search = f"<reason>seen</reason><text_search>{question.query}</text_search>"
    read = f"<reason>read</reason><answer>{answer}</answer>"
    if mode == "always":
        return [search, read]
    if question.known:
        return [f"<reason>known</reason><answer>{answer}</answer>"]
    return ["<reason>unknown</reason><search><img></search>", search, read]


@dataclass
class DemoConfig:
    out: str
    seed: int = 0
    minutes: float = 54.0
    """Wall-clock budget of SFT + GRPO (world building and the final save come on top)."""
    grpo_share: float = 0.35
    """Share of ``minutes`` given to GRPO (0: SFT only)."""
    stream: int = 2000
    batch_size: int = 32
    learning_rate: float = 1e-3
    warmup_steps: int = 50
    known_share: float = 0.35
    """Share of the ``auto``-mode SFT batches on known entities (direct answers); the rest search."""
    stream_share: float = 0.9
    """Share of search batches drawn from the stream (the rest: the train split's unknown entities)."""
    always_share: float = 0.15
    """Share of SFT batches in the ``always`` search mode (the RAG workflow: image search run by
    the loop, then the model's text search and answer), over train and stream questions alike,
    so that the workflow baseline of the evaluation is a trained behaviour too."""
    grpo_learning_rate: float = 1e-4
    grpo_max_steps: int = 200
    """Sets the warm-up (5% of it) and the schedule; the time budget usually stops GRPO first."""
    grpo_known_share: float | None = None
    """Share of the GRPO questions on known entities (drawn from the train split, at most as many
    as it holds: 960 of 4,000 questions, 24%, in the demo world; the rest are the train split's
    other entities and the stream); ``None`` takes the questions as they come (13% known). The
    reward separates answering a known entity directly (1.0) from searching for it (0.91) only
    where such questions are asked."""
    grpo_generations: int = 8
    grpo_prompts: int = 4
    value_weight: float = 8.0
    """Loss weight of the tokens the policy must copy or recall (the text search query and the
    answer) relative to the protocol's fixed tokens. The logged loss is normalised by the weights,
    so it does not compare across values."""
    reason_weight: float = 1.0
    """Loss weight of the reasoning (whose first tokens are the search decision) in the SFT stage."""
    decision_minutes: float = 6.0
    """A second SFT stage (taken from ``minutes``) from the first one's checkpoint, with the
    reasoning weighted like the values (``reason_weight = value_weight``) and a constant
    ``decision_learning_rate``: the first stage, values weighted alone, learns to copy but lets
    the search decision drift; this stage restores the decision."""
    decision_learning_rate: float = 3e-4
    first_turns: float = 0.0
    """Share of the first SFT stage's batches made of first turns only (:func:`first_turn`: the
    image, the question and the model's first turn, known and other entities in equal numbers,
    the reasoning weighted like the values). The search decision is one token of a trajectory;
    these short sequences (a fifth of a search trajectory's length) teach it throughout."""
    decision_first_turns: float = 0.0
    """The same share in the decision stage."""
    init: str | None = None
    """Start from this checkpoint (an earlier demo model, its tokenizer and processor) instead of
    a new tiny model: the recipe's stages then continue its training."""
    threads: int = 1
    world: str | None = None
    """An existing world folder to reuse (default: build ``OUT/world``)."""

    def __post_init__(self) -> None:
        for name in (
            "grpo_share",
            "known_share",
            "stream_share",
            "always_share",
            "first_turns",
            "decision_first_turns",
            "grpo_known_share",
        ):
            if getattr(self, name) is not None and not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be within [0, 1], not {getattr(self, name)}")
        for name in ("value_weight", "reason_weight"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, not {getattr(self, name)}")
        if self.decision_minutes < 0:
            raise ValueError(f"decision_minutes must not be negative, not {self.decision_minutes}")
        sft_minutes = self.minutes * (1 - self.grpo_share)
        if self.decision_minutes and sft_minutes <= self.decision_minutes:
            raise ValueError(
                f"decision_minutes {self.decision_minutes:g} leaves no first SFT stage: "
                f"minutes x (1 - grpo_share) is {sft_minutes:g}"
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


@dataclass
class Example:
    input_ids: list[int]
    labels: list[int]
    pixel_values: Any
    grid_thw: Any
    weights: list[float] | None = None
    """Per-token loss weights (:func:`value_weights`), computed once with the encoding; ``None``
    for the plain mean over the labels."""


def encode_example(question: Question, processor: Any, env: Any, mode: SearchMode = "auto") -> Example:
    """One gold trajectory replayed through the serving loop, with its pixel values computed once."""
    from mmsr_train.sft import Trajectory, build_example

    image = Path(question.image) if question.image else None
    trajectory = Trajectory(question.question, tuple(gold_turns(question, mode)), image, mode=mode)
    row = build_example(trajectory, processor, env)
    pixels = processor.image_processor(images=row["images"], return_tensors="pt")
    return Example(row["input_ids"], row["labels"], pixels["pixel_values"], pixels["image_grid_thw"])


def first_turn(example: Example, image_token_id: int, merge: int = 2) -> Example:
    """The example cut after the model's first turn: the prompt, its image and that turn's
    labels, with the images of later turns (search thumbnails) dropped from the pixel rows.
    ``merge`` is the vision tower's spatial merge size (an image's tokens are its patches over
    ``merge ** 2``)."""
    labelled = [i for i, label in enumerate(example.labels) if label != -100]
    if not labelled:
        return replace(example)
    end = labelled[0]
    while end < len(example.labels) and example.labels[end] != -100:
        end += 1
    ids = example.input_ids[:end]
    tokens = sum(1 for token in ids if token == image_token_id)
    images = patches = 0
    for t, h, w in example.grid_thw.tolist():
        if tokens <= 0:
            break
        tokens -= t * h * w // merge**2
        images, patches = images + 1, patches + t * h * w
    weights = example.weights[:end] if example.weights is not None else None
    return Example(
        ids, example.labels[:end], example.pixel_values[:patches], example.grid_thw[:images], weights
    )


VALUE_TAGS = (TEXT_SEARCH, ANSWER)
"""The spans whose content is a value (copied from the results, or recalled), not protocol."""
REASON_TAGS = REASON
"""The span whose first tokens are the search decision (known, unknown) or the step (seen, read)."""


def value_weights(
    example: Example, tag_ids: dict[str, int], weight: float, reason_weight: float = 1.0
) -> list[float]:
    """Per-token loss weights: ``weight`` for label tokens inside a :data:`VALUE_TAGS` span,
    ``reason_weight`` inside the :data:`REASON_TAGS` span (closing tags included), 1 for the other
    label tokens, 0 where there is no label."""
    spans = {tag_ids[o]: (tag_ids[c], weight) for o, c in VALUE_TAGS}
    spans[tag_ids[REASON_TAGS[0]]] = (tag_ids[REASON_TAGS[1]], reason_weight)
    out: list[float] = []
    inside: tuple[int, float] | None = None
    for token, label in zip(example.input_ids, example.labels, strict=True):
        if label == -100:
            out.append(0.0)
            inside = None
            continue
        out.append(inside[1] if inside is not None else 1.0)
        if inside is not None and token == inside[0]:
            inside = None
        elif token in spans:
            inside = spans[token]
    return out


def weighted_loss(logits: Any, labels: Any, weights: Any) -> Any:
    """Next-token cross-entropy, each target token weighted; normalised by the weights' sum."""
    import torch.nn.functional as F

    logits, labels, weights = logits[:, :-1], labels[:, 1:], weights[:, 1:]
    losses = F.cross_entropy(
        logits.reshape(-1, logits.shape[-1]).float(), labels.reshape(-1), ignore_index=-100, reduction="none"
    )
    weights = weights.reshape(-1)
    return (losses * weights).sum() / weights.sum().clamp(min=1.0)


def collate(examples: Sequence[Example], pad_id: int, image_token_id: int) -> dict[str, Any]:
    import torch

    width = max(len(e.input_ids) for e in examples)
    ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    labels = torch.full((len(examples), width), -100, dtype=torch.long)
    mask = torch.zeros((len(examples), width), dtype=torch.long)
    for i, e in enumerate(examples):
        ids[i, : len(e.input_ids)] = torch.tensor(e.input_ids)
        labels[i, : len(e.labels)] = torch.tensor(e.labels)
        mask[i, : len(e.input_ids)] = 1
    batch = {
        "input_ids": ids,
        "attention_mask": mask,
        "labels": labels,
        "pixel_values": torch.cat([e.pixel_values for e in examples]),
        "image_grid_thw": torch.cat([e.grid_thw for e in examples]),
        "mm_token_type_ids": image_token_types(ids, image_token_id),
    }
    if all(e.weights is not None for e in examples):  # padding weighs 0
        weights = torch.zeros((len(examples), width))
        for i, e in enumerate(examples):
            weights[i, : len(e.labels)] = torch.tensor(e.weights)
        batch["weights"] = weights
    return batch


class LazyPool:
    """Examples encoded on first use (the first epoch pays for the replay, later ones reuse it)."""

    def __init__(self, questions: list[Question], encode: Callable[[Question], Example]) -> None:
        self.questions = questions
        self.encode = encode
        self.cache: dict[int, Example] = {}

    def sample(self, rng: random.Random, k: int) -> list[Example]:
        out = []
        for i in rng.sample(range(len(self.questions)), min(k, len(self.questions))):
            if i not in self.cache:
                self.cache[i] = self.encode(self.questions[i])
            out.append(self.cache[i])
        return out


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


def end_of_turn_labels(example: Example, end_id: int) -> Example:
    """The example with the end-of-turn token after each model turn learned too.

    The serving loop (and GRPO) stops a protocol turn on its closing tag, so the chat template's
    ``<|im_end|>`` after it is an environment token, never learned in SFT; but a plain turn (the
    ``off`` search mode, or a client calling the model without the protocol) has no stop strings
    and needs the model to end its turn itself. The model turns stay targets: with the end token
    alone as target, the model learns to end every turn at once.
    """
    labels = list(example.labels)
    for i in range(1, len(example.input_ids)):
        if example.input_ids[i] == end_id and example.labels[i - 1] != -100:
            labels[i] = end_id
    return Example(example.input_ids, labels, example.pixel_values, example.grid_thw)


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
        warmup_ratio=0.05,
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
