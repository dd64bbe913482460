"""The demo recipe's settings (``mmsr train demo``'s flags); light to import."""

from __future__ import annotations

from dataclasses import dataclass


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
