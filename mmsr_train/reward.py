"""The paper's reward, computed from the model turns of one trajectory.

    reward = (1 - a) * acc * penalty + a * format,   a = format_weight = 0.1

- ``acc``: 1 when the answer of the last turn, normalised, equals (``em``) or contains (``subem``) the
  normalised ground truth or one of the candidate answers.
- ``penalty``: ``1 - search_penalty`` (0.9) when the answer is correct and any search was used, or
  ``(1 - search_penalty) ** searches`` with ``per_search_penalty``; 1 otherwise. Wrong answers are
  not penalised for searching (their accuracy term is 0 anyway).
- ``format``: 1 when every turn is ``<reason>...</reason>`` + one action and the actions form a
  valid shape, as decided by :func:`mmsr_serve.agent.parser.check_trajectory` (the serving parser:
  there is no second copy of the protocol here).

So a correct answer without search scores 1.0, with search 0.91, a wrong but well-formed
trajectory 0.1, and a malformed one 0.9 * acc * penalty.

Answers are matched by :func:`mmsr_bench.answers.is_correct` (the normalisation is there), the
same function evaluation scores with, so a reward and an eval accuracy never disagree.

``compat="release"`` scores as the official release's scorer does instead, for reproducing its
run: its answer extraction, normalisation and format check differ from ours where ours is
deliberately stricter or more forgiving (:mod:`mmsr_train.reward_release` lists each).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from mmsr_bench.answers import MatchMode, is_correct, normalize_answer
from mmsr_serve.agent.parser import check_trajectory, parse_turn
from mmsr_train import reward_release

RewardCompat = Literal["mmsr", "release"]

__all__ = [
    "MatchMode",
    "RewardCompat",
    "RewardParts",
    "compute_reward",
    "is_correct",
    "normalize_answer",
    "score_trajectory",
]


@dataclass(frozen=True)
class RewardParts:
    reward: float
    accuracy: float
    format: float
    penalty: float
    """The search penalty factor applied to the accuracy term (1.0 when none applied)."""
    searches: int
    answer: str | None


def score_trajectory(
    turns: Sequence[str],
    ground_truth: str | Sequence[str],
    candidate_answers: Sequence[str] = (),
    mode: MatchMode = "em",
    search_penalty: float = 0.1,
    format_weight: float = 0.1,
    per_search_penalty: bool = False,
    compat: RewardCompat = "mmsr",
) -> RewardParts:
    """The reward and its parts. ``turns`` are the model turn texts, in order. ``compat``
    "release" scores as the official release does (:mod:`mmsr_train.reward_release`)."""
    answers = [ground_truth] if isinstance(ground_truth, str) else list(ground_truth)
    answers += list(candidate_answers)
    if compat == "release":
        answer = reward_release.answer_of(turns[-1]) if turns else None
        accuracy = 1.0 if reward_release.correct(answer, answers, mode) else 0.0
        searches = reward_release.searches(turns)
        valid = bool(turns) and reward_release.well_formed(turns)
    else:
        check = check_trajectory(turns)
        last = parse_turn(turns[-1]) if turns else None
        answer = last.answer if last is not None and last.action == "answer" else None
        accuracy = 1.0 if is_correct(answer, answers, mode) else 0.0
        searches = sum(action in ("image_search", "text_search") for action in check.shape)
        valid = check.valid
    penalty = 1.0
    if accuracy and searches:
        penalty = (1 - search_penalty) ** searches if per_search_penalty else 1 - search_penalty
    fmt = 1.0 if valid else 0.0
    reward = (1 - format_weight) * accuracy * penalty + format_weight * fmt
    return RewardParts(reward, accuracy, fmt, penalty, searches, answer)


def compute_reward(
    turns: Sequence[str],
    ground_truth: str | Sequence[str],
    candidate_answers: Sequence[str] = (),
    mode: MatchMode = "em",
    search_penalty: float = 0.1,
    format_weight: float = 0.1,
    per_search_penalty: bool = False,
    compat: RewardCompat = "mmsr",
) -> float:
    """The paper's reward of one trajectory (see the module docstring)."""
    options = (search_penalty, format_weight, per_search_penalty, compat)
    return score_trajectory(turns, ground_truth, candidate_answers, mode, *options).reward
