"""The release's sigmoid learning-rate decay, and its wiring into the GRPO run config."""

from __future__ import annotations

import itertools
import math

import pytest

from mmsr_train.config import GRPORunConfig
from mmsr_train.grpo import grpo_args
from mmsr_train.schedules import lr_lambda, sigmoid_decay


@pytest.mark.parametrize(
    ("step", "rate"),
    [(0, 1.99991e-6), (45, 1.05e-6), (60, 1.65446e-7), (90, 1.00086e-7), (4710, 1e-7)],
)
def test_the_release_schedule_at_its_landmarks(step: int, rate: float) -> None:
    assert 2e-6 * sigmoid_decay(step, midpoint=45, floor=0.05) == pytest.approx(rate, rel=1e-4)


def test_it_decays_monotonically_and_stays_finite() -> None:
    factors = [sigmoid_decay(s, midpoint=45, floor=0.05) for s in range(0, 10_000, 7)]
    assert all(a >= b for a, b in itertools.pairwise(factors))
    assert math.isfinite(sigmoid_decay(10**9, midpoint=45, floor=0.05))  # e^x would overflow here
    mean = sum(sigmoid_decay(s, midpoint=45, floor=0.05) for s in range(4710)) / 4710
    assert mean < 0.07  # a decay over the run, not a warm-up: the mean rate is near the floor
    with pytest.raises(ValueError, match="midpoint"):
        sigmoid_decay(1, midpoint=0, floor=0.05)


def test_the_run_config_defaults_to_the_release_schedule() -> None:
    config = GRPORunConfig(model="m", train_data="t", output_dir="o", device="cpu")
    schedule = (config.lr_schedule, config.lr_decay_midpoint, config.lr_decay_floor)
    assert schedule == ("sigmoid_decay", 45, 0.05)
    args = grpo_args(config, has_eval=False)
    assert args.weight_decay == 0.01 and args.lr_scheduler_type == "constant" and args.warmup_steps == 0
    factor = lr_lambda(config.lr_schedule, midpoint=45, floor=0.05)
    assert factor is not None and factor(45) == pytest.approx(0.525)
    warm = GRPORunConfig(
        model="m", train_data="t", output_dir="o", device="cpu", lr_schedule="constant_with_warmup"
    )
    assert grpo_args(warm, has_eval=False).lr_scheduler_type == "constant_with_warmup"
    assert lr_lambda("constant_with_warmup", midpoint=45, floor=0.05) is None
