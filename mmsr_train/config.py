"""Run configuration of ``mmsr train grpo``: one flat dataclass, from a YAML/JSON file and/or flags.

Defaults are the paper's (MMSearch-R1, arXiv 2506.20670): lr 2e-6 decayed by the release's
sigmoid schedule (:mod:`mmsr_train.schedules`: 1.05e-6 at step 45, 1e-7 from about step 90),
AdamW weight decay 0.01, KL 0.001,
8 rollouts per prompt, 3 turns, searches 1 image / 2 text, top-5 results, 2048 tokens a turn and
8192 for the conversation after the first prompt, images at most 672*672 pixels,
reward ``0.9 * acc * penalty + 0.1 * format``.

Decisions where the paper leaves TRL's knobs open:

- ``loss_type`` "dapo": token-level averaging over the whole batch, which is what veRL's
  ``token-mean`` loss aggregation (the release's setting) computes; stated explicitly rather than
  left to TRL's default.
- ``lr_schedule`` ``constant_with_warmup`` (``warmup_ratio`` of the steps, then constant) stays
  available for short runs, where a decay tuned for the release's step count would leave them at
  the floor: the embedded demo uses it.
- ``max_completion_length`` is tied to ``max_total_tokens``: the rollout enforces the budget itself
  and TRL must not cut a conversation that the loop considered within its limits.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args

from mmsr_serve.agent.limits import Limits
from mmsr_serve.agent.prompts import checkpoint_pack
from mmsr_serve.agent.protocol import SearchMode
from mmsr_serve.config import OLD_NAMES, AgentConfig, checkpoint_protocol, read_config_file
from mmsr_serve.errors import ConfigError, InvalidInputError


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
    eval_max_samples: int | None = 200
    """Evaluate on a seeded sample of at most this many held-out questions (None: all of them):
    FVQA-test's 1,800 x 4 rollouts every 50 steps would cost more trajectories than training."""
    eval_greedy: bool = False
    """Evaluation rollouts decode greedily (in-process generation; vLLM keeps the run's sampling)."""
    eval_on_start: bool = True
    """Evaluate once before the first step (the baseline every later evaluation compares with)."""
    final_eval_modes: list[str] = field(default_factory=lambda: ["off", "always", "auto"])
    """After training, the held-out questions in these search modes: the paper's table, written
    to ``output_dir/final_eval/`` (:mod:`mmsr_train.final_eval`). Empty: none."""
    log_trajectories: bool = False
    """TRL's completions table every logging step, with the trajectory's turns, searches and reward
    parts as columns: printed, written to ``output_dir/completions/``, logged to wandb/trackio."""
    agent: AgentConfig = field(default_factory=lambda: AgentConfig())
    """The rollouts' search tools, limits and prompt pack: the serving configuration
    (:class:`~mmsr_serve.config.AgentConfig`), whose fields a run config file and the flags give at
    the top level (``index``, ``text_search``, ``max_turns`` ...) beside the training fields."""
    temperature: float = 1.0
    top_p: float = 1.0
    # reward
    reward_mode: Literal["em", "subem"] = "em"
    search_penalty: float = 0.1
    format_weight: float = 0.1
    per_search_penalty: bool = False
    reward_compat: Literal["mmsr", "release"] = "mmsr"
    """``release``: score as the official release's scorer (mmsr_train/reward_release.py)."""
    # optimisation
    num_generations: int = 8
    prompts_per_device: int = 1
    """Prompts per device per step; the device batch is ``prompts_per_device * num_generations``."""
    gradient_accumulation_steps: int = 1
    learning_rate: float = 2e-6
    lr_schedule: Literal["sigmoid_decay", "constant_with_warmup"] = "sigmoid_decay"
    lr_decay_midpoint: int = 45
    """``sigmoid_decay``: the step at which the rate is halfway down (the release's 45)."""
    lr_decay_floor: float = 0.05
    """``sigmoid_decay``: the final rate, as a fraction of ``learning_rate`` (the release: 1 - 0.95)."""
    warmup_ratio: float = 0.05
    """``constant_with_warmup``: the warm-up's share of the steps."""
    weight_decay: float = 0.01
    beta: float = 0.001
    loss_type: Literal["dapo", "grpo", "bnpo", "dr_grpo"] = "dapo"
    epochs: float = 1.0
    max_steps: int = -1
    seed: int = 0
    # machine
    device: Literal["auto", "cpu", "cuda"] = "auto"
    bf16: bool | None = None
    """Compute in bfloat16 (autocast; the weights stay float32). None: on CUDA, not on CPU."""
    bf16_weights: bool = False
    """Store the policy's weights in bfloat16 too (half the memory, but AdamW's updates round away)."""
    gradient_checkpointing: bool = False
    use_vllm: bool = False
    vllm_mode: Literal["colocate", "server"] = "colocate"
    vllm_server_base_url: str | None = None
    vllm_gpu_memory_utilization: float = 0.3
    # bookkeeping
    save_steps: int = 100
    logging_steps: int = 1
    report_to: str = "none"
    trl_args: dict[str, Any] = field(default_factory=dict)
    """Any other ``trl.GRPOConfig`` option (``epsilon_high``, ``num_iterations``, ``max_grad_norm``,
    ``save_total_limit``, ``lr_scheduler_type`` ...), given at the top level of the run config or
    as a flag (``--epsilon-high 0.28``) and passed to TRL, which validates it; it wins over what
    the fields above set. An ``lr_scheduler_type`` replaces ``lr_schedule``."""

    def __post_init__(self) -> None:
        if isinstance(self.final_eval_modes, str):  # a flag: --final-eval-modes off,auto (or none)
            words = [m.strip() for m in self.final_eval_modes.split(",") if m.strip()]
            self.final_eval_modes = [] if words == ["none"] else words
        # YAML 1.1 reads an unquoted off as false: [off, always, auto] -> [False, 'always', 'auto']
        self.final_eval_modes = ["off" if m is False else m for m in self.final_eval_modes]
        if wrong := [m for m in self.final_eval_modes if m not in get_args(SearchMode)]:
            raise ConfigError(f"final_eval_modes: {wrong} are not search modes (off, always, auto)")
        if self.num_generations < 2:
            raise ConfigError("num_generations must be at least 2 (GRPO compares rollouts of one prompt)")
        if self.eval_max_samples is not None and self.eval_max_samples < 1:
            raise ConfigError("eval_max_samples must be at least 1 (or null: the whole held-out set)")
        if not 0 <= self.eval_fraction < 1:
            raise ConfigError("eval_fraction must lie in [0, 1)")
        if self.lr_decay_midpoint < 1 or not 0 <= self.lr_decay_floor <= 1:
            raise ConfigError("lr_decay_midpoint must be at least 1 and lr_decay_floor lie in [0, 1]")
        if self.use_vllm and self.vllm_mode == "server" and not self.vllm_server_base_url:
            raise ConfigError("vllm_mode 'server' needs vllm_server_base_url")
        try:
            self.limits()
        except InvalidInputError as exc:
            raise ConfigError(f"run config: {exc}") from exc

    def limits(self) -> Limits:
        """The rollouts' limits: the agent's, as training runs them (``recover=False``)."""
        return self.agent.limits(recover=False)

    @classmethod
    def load(
        cls,
        path: str | os.PathLike[str] | None = None,
        *,
        env: Mapping[str, str] | None = None,
        **overrides: Any,
    ) -> GRPORunConfig:
        """Fields from a YAML/JSON file, then ``overrides`` (None values are ignored). Agent fields
        sit at the top level beside the training ones and are loaded as ``mmsr serve`` loads them
        (:meth:`AgentConfig.load`: the environment's provider keys, old spellings with a warning)."""
        data = read_config_file(path) if path is not None else {}
        given = {k: v for k, v in overrides.items() if v is not None}
        trl = {**trl_options(data), **trl_options(given)}
        own, agent_file = split_fields(cls, {k: v for k, v in data.items() if k not in trl})
        own_flags, agent_flags = split_fields(cls, {k: v for k, v in given.items() if k not in trl})
        own.update(own_flags)
        own["trl_args"] = {**own.get("trl_args", {}), **trl}
        missing = sorted(n for n in ("model", "train_data", "output_dir") if not own.get(n))
        if missing:
            raise ConfigError(f"missing run config keys: {missing}")
        start = starting_point(own["model"])  # the checkpoint's own record: below file, env, flags
        agent = AgentConfig.from_sources({**start, **agent_file}, env=training_env(env), **agent_flags)
        return cls(**own, agent=agent)

    def to_dict(self) -> dict[str, Any]:
        """The run as a config file would give it (the agent's fields at the top level, no secrets)."""
        skip = ("agent", "trl_args")
        own = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name not in skip}
        return {**own, **self.trl_args, **self.agent.record()}


def training_env(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment the agent configuration of a training run reads: the serving variables
    (``MMSR_*``, provider keys) but ``MMSR_CONFIG``, since the run config is the config file."""
    out = dict(os.environ if env is None else env)
    out.pop("MMSR_CONFIG", None)
    return out


def starting_point(checkpoint: str | os.PathLike[str] | None) -> dict[str, Any]:
    """What a checkpoint that training continues from recorded: its prompt pack and its limits and
    image sizes (``mmsr_agent.json``), as agent settings of the lowest precedence. Training on
    from a checkpoint then keeps the pack it was trained with (and writes that pack into the new
    checkpoint), unless the run configures another."""
    if not checkpoint:
        return {}
    values: dict[str, Any] = checkpoint_protocol({"backend": "hf", "model": str(checkpoint)})
    pack = checkpoint_pack(Path(checkpoint)) if Path(checkpoint).is_dir() else None
    if pack is not None:
        values["prompt_pack"] = pack
    return values


def trl_options(values: Mapping[str, Any]) -> dict[str, Any]:
    """The keys of ``values`` that are ``trl.GRPOConfig`` options and neither ours nor the agent's."""
    ours = {f.name for f in dataclasses.fields(GRPORunConfig)} | set(AgentConfig.model_fields)
    rest = set(values) - ours - set(OLD_NAMES)
    if not rest:
        return {}
    from trl import GRPOConfig  # only when asked: importing TRL takes seconds

    options = {f.name for f in dataclasses.fields(GRPOConfig)}
    return {k: values[k] for k in rest if k in options}


def split_fields(cls: Any, values: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """``values`` split into ``cls``'s own dataclass fields and the agent's; unknown keys are an error."""
    own_names = {f.name for f in dataclasses.fields(cls)} - {"agent"}
    agent_names = set(AgentConfig.model_fields) | set(OLD_NAMES)
    unknown = sorted(set(values) - own_names - agent_names)
    if unknown:
        raise ConfigError(f"unknown run config keys: {unknown}")
    own = {k: v for k, v in values.items() if k in own_names}
    agent = {k: v for k, v in values.items() if k not in own_names}
    return own, agent
