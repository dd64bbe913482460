"""Run configuration of ``mmsr train grpo``: one flat dataclass, from a YAML/JSON file and/or flags.

Defaults are the paper's (MMSearch-R1, arXiv 2506.20670): lr 2e-6 with warm-up, KL 0.001,
8 rollouts per prompt, 3 turns, searches 1 image / 2 text, top-5 results, 2048 tokens a turn and
8192 for the conversation after the first prompt, images at most 672*672 pixels,
reward ``0.9 * acc * penalty + 0.1 * format``.

Decisions where the paper leaves TRL's knobs open:

- ``loss_type`` "dapo": token-level averaging over the whole batch, which is what veRL's
  ``token-mean`` loss aggregation (the release's setting) computes; stated explicitly rather than
  left to TRL's default.
- ``warmup_ratio`` 0.05 (the release warms up; the paper gives no ratio).
- ``max_completion_length`` is tied to ``max_total_tokens``: the rollout enforces the budget itself
  and TRL must not cut a conversation that the loop considered within its limits.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from mmsr_serve.agent.limits import Limits
from mmsr_serve.errors import ConfigError, InvalidInputError

_LIMITS = Limits()  # the paper's limits, the one place they are written


@dataclass
class GRPORunConfig:
    model: str
    """Checkpoint folder (or hub id where the machine can download) of a Qwen2.5-VL-family model."""
    train_data: str
    output_dir: str
    eval_data: str | None = None
    eval_fraction: float = 0.0
    """Hold out this fraction of ``train_data`` for evaluation when ``eval_data`` is not given."""
    eval_steps: int = 50
    # search tools
    corpus: str | None = None
    """A local index corpus folder (``docs.jsonl`` + images); answers both searches when no
    provider is named."""
    image_search: list[str] = field(default_factory=list)
    """Image search providers in fallback order: ``serpapi-lens``, ``local``."""
    text_search: list[str] = field(default_factory=list)
    """Text search providers in fallback order: ``serpapi``, ``brave``, ``tavily``, ``searxng``,
    ``duckduckgo``, ``local`` (docs/search.md)."""
    reader: Literal["local", "jina", "none"] = "local"
    summarizer_base_url: str | None = None
    summarizer_model: str | None = None
    search_cache: str | None = None
    search_cache_mode: Literal["readwrite", "replay", "refresh"] = "readwrite"
    prompt_pack: str | None = None
    # rollouts (the paper's training limits)
    max_turns: int = _LIMITS.max_turns
    max_image_searches: int = _LIMITS.max_image_searches
    max_text_searches: int = _LIMITS.max_text_searches
    top_k: int = _LIMITS.top_k
    max_new_tokens: int = _LIMITS.max_new_tokens
    max_total_tokens: int = _LIMITS.max_total_tokens
    max_image_pixels: int = _LIMITS.max_image_pixels
    temperature: float = 1.0
    top_p: float = 1.0
    # reward
    reward_mode: Literal["em", "subem"] = "em"
    search_penalty: float = 0.1
    format_weight: float = 0.1
    per_search_penalty: bool = False
    # optimisation
    num_generations: int = 8
    prompts_per_device: int = 1
    """Prompts per device per step; the device batch is ``prompts_per_device * num_generations``."""
    gradient_accumulation_steps: int = 1
    learning_rate: float = 2e-6
    warmup_ratio: float = 0.05
    beta: float = 0.001
    loss_type: Literal["dapo", "grpo", "bnpo", "dr_grpo"] = "dapo"
    epochs: float = 1.0
    max_steps: int = -1
    seed: int = 0
    # machine
    device: Literal["auto", "cpu", "cuda"] = "auto"
    bf16: bool | None = None
    """None: bfloat16 on CUDA, float32 on CPU."""
    gradient_checkpointing: bool = False
    use_vllm: bool = False
    vllm_mode: Literal["colocate", "server"] = "colocate"
    vllm_server_base_url: str | None = None
    vllm_gpu_memory_utilization: float = 0.3
    # bookkeeping
    save_steps: int = 100
    logging_steps: int = 1
    report_to: str = "none"

    def __post_init__(self) -> None:
        if self.num_generations < 2:
            raise ConfigError("num_generations must be at least 2 (GRPO compares rollouts of one prompt)")
        if not 0 <= self.eval_fraction < 1:
            raise ConfigError("eval_fraction must lie in [0, 1)")
        if self.use_vllm and self.vllm_mode == "server" and not self.vllm_server_base_url:
            raise ConfigError("vllm_mode 'server' needs vllm_server_base_url")
        try:
            self.limits()
        except InvalidInputError as exc:
            raise ConfigError(f"run config: {exc}") from exc

    def limits(self) -> Limits:
        return Limits(
            max_turns=self.max_turns,
            max_image_searches=self.max_image_searches,
            max_text_searches=self.max_text_searches,
            top_k=self.top_k,
            max_new_tokens=self.max_new_tokens,
            max_total_tokens=self.max_total_tokens,
            max_image_pixels=self.max_image_pixels,
            recover=False,
        )

    @classmethod
    def load(cls, path: str | os.PathLike[str] | None = None, **overrides: Any) -> GRPORunConfig:
        """Fields from a YAML/JSON file, then ``overrides`` (None values are ignored)."""
        data: dict[str, Any] = {}
        if path is not None:
            path = Path(path)
            try:
                raw = path.read_text(encoding="utf-8")
                loaded = yaml.safe_load(raw) if path.suffix in (".yaml", ".yml") else json.loads(raw)
            except (OSError, ValueError, yaml.YAMLError) as exc:
                raise ConfigError(f"cannot read run config {path}: {exc}") from exc
            if not isinstance(loaded, dict):
                raise ConfigError(f"run config {path} must hold a mapping")
            data.update(loaded)
        data.update({k: v for k, v in overrides.items() if v is not None})
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ConfigError(f"unknown run config keys: {unknown}")
        missing = sorted(n for n in ("model", "train_data", "output_dir") if not data.get(n))
        if missing:
            raise ConfigError(f"missing run config keys: {missing}")
        return cls(**data)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)
