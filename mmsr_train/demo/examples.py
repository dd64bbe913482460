"""The demo's training examples: its prompt pack, the gold trajectories, their encoding through
the serving loop, per-token loss weights and batches."""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
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
    """A batch of examples (:func:`mmsr_train.sft.pad_batch`) with their precomputed pixel values
    and, where every example has them, the loss weights (0 on the padding)."""
    import torch

    from mmsr_train.sft import pad_batch

    batch = pad_batch([e.input_ids for e in examples], [e.labels for e in examples], pad_id)
    batch["pixel_values"] = torch.cat([e.pixel_values for e in examples])
    batch["image_grid_thw"] = torch.cat([e.grid_thw for e in examples])
    batch["mm_token_type_ids"] = image_token_types(batch["input_ids"], image_token_id)
    if all(e.weights is not None for e in examples):
        weights = torch.zeros(batch["input_ids"].shape)
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
