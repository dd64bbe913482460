"""Learning-rate schedules TRL's (transformers') named ones do not have.

:func:`sigmoid_decay` is the release's: the rate stays near its peak, falls along a logistic
curve centred on ``midpoint`` steps, and settles at ``floor`` times the peak. With the release's
settings (peak 2e-6, midpoint 45, floor 0.05): 2e-6 at step 0, 1.05e-6 at step 45, 1.65e-7 at
60, 1e-7 from about step 90 on. It is a decay, not a warm-up: over a long run the mean rate is
near the floor.
"""

from __future__ import annotations

import math
from collections.abc import Callable

__all__ = ["lr_lambda", "sigmoid_decay"]


def sigmoid_decay(step: int, *, midpoint: int, floor: float) -> float:
    """The factor on the peak rate at ``step``: ``(1 - floor) / (1 + e^(k (step - midpoint))) + floor``
    with ``k = 10 / midpoint`` (the curve's width a tenth of the midpoint). Written to stay finite
    at any step (``e^x`` for a large ``x`` would overflow a float)."""
    if midpoint < 1:
        raise ValueError(f"midpoint must be at least 1 step, got {midpoint}")
    if not 0 <= floor <= 1:
        raise ValueError(f"floor must lie in [0, 1], got {floor}")
    x = 10.0 / midpoint * (step - midpoint)
    logistic = 1 / (1 + math.exp(x)) if x <= 0 else math.exp(-x) / (1 + math.exp(-x))
    return (1 - floor) * logistic + floor


def lr_lambda(schedule: str, *, midpoint: int, floor: float) -> Callable[[int], float] | None:
    """The factor function of a schedule transformers cannot name (None for the ones it can)."""
    if schedule == "sigmoid_decay":
        return lambda step: sigmoid_decay(step, midpoint=midpoint, floor=floor)
    return None
