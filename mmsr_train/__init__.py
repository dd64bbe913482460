"""Training searching VLMs: data, the paper's reward, rollouts through the serving loop, GRPO on TRL.

Modules, in the order a run uses them::

    data        Sample, load_samples (JSONL / FVQA parquet), write_jsonl
    curate      label_samples, balance: the search-balanced training set
    reward      compute_reward, score_trajectory, is_correct (EM / SubEM)
    policy      PolicyBackend, TokenTrace: the loop's model as token ids
    generators  HFGenerator, VLLMGenerator, TeacherGenerator, RoundBatcher
    rollout     run_rollout(s): the SDK's SearchAgent over a PolicyBackend
    trainer     SearchGRPOTrainer (TRL's GRPOTrainer with our generation step; imports torch, trl)
    grpo        GRPORunConfig -> train_grpo: the whole GRPO run
    sft         train_sft: SFT warm start on protocol trajectories
    checkpoint  PACK_FILE, save_checkpoint: checkpoints that ``mmsr serve`` loads
    cli         ``mmsr train ...``

Exceptions (besides :mod:`mmsr_serve.errors`, whose ``MMSRError`` they derive from)::

    MMSRError
    ├── DataError        a data file or row is unusable (the message names the row)
    └── TemplateError    a chat template that rewrites earlier turns: no token-exact rollouts

torch, transformers and trl are imported by ``trainer``, ``grpo``'s training functions and the
generators when they run, never by importing this package.
"""

from typing import TYPE_CHECKING, Any

from mmsr_bench.data import DataError, Sample, load_samples, write_jsonl
from mmsr_train.checkpoint import PACK_FILE, save_checkpoint
from mmsr_train.config import GRPORunConfig
from mmsr_train.generators import HFGenerator, RoundBatcher, TeacherGenerator, VLLMGenerator
from mmsr_train.policy import (
    PolicyBackend,
    TemplateError,
    TokenGenerator,
    TokenOutput,
    TokenRequest,
    TokenTrace,
)
from mmsr_train.reward import RewardParts, compute_reward, is_correct, normalize_answer, score_trajectory
from mmsr_train.rollout import TRAINING_LIMITS, Rollout, RolloutEnv, RolloutTask, run_rollout, run_rollouts

if TYPE_CHECKING:
    from mmsr_train.trainer import SearchGRPOTrainer

__all__ = [
    "PACK_FILE",
    "TRAINING_LIMITS",
    "DataError",
    "GRPORunConfig",
    "HFGenerator",
    "PolicyBackend",
    "RewardParts",
    "Rollout",
    "RolloutEnv",
    "RolloutTask",
    "RoundBatcher",
    "Sample",
    "SearchGRPOTrainer",
    "TeacherGenerator",
    "TemplateError",
    "TokenGenerator",
    "TokenOutput",
    "TokenRequest",
    "TokenTrace",
    "VLLMGenerator",
    "compute_reward",
    "is_correct",
    "load_samples",
    "normalize_answer",
    "run_rollout",
    "run_rollouts",
    "save_checkpoint",
    "score_trajectory",
    "write_jsonl",
]


def __getattr__(name: str) -> Any:
    if name == "SearchGRPOTrainer":
        from mmsr_train.trainer import SearchGRPOTrainer

        return SearchGRPOTrainer
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
