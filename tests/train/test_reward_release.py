"""mmsr's reward and the release-compatible one, case by case: where they agree, and each place
where they differ on purpose. With a checkout of the release (``MMSR_RELEASE_CHECKOUT``), the
release-compatible mode is also checked against the release's own scorer on every case."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from types import ModuleType

import pytest

from mmsr_train.reward import score_trajectory

R = "<reason>I know this landmark.</reason>"
IMG = "<reason>I do not recognise it.</reason><search><img></search>"
TXT = "<reason>It is the Cyrrus tower.</reason><text_search>Cyrrus tower city</text_search>"
ANS = "<reason>The page says so.</reason><answer>Paris</answer>"

# (name, turns, gold, candidates, mode, per_search, mmsr reward, release reward)
CASES: list[tuple[str, list[str], str, list[str], str, bool, float, float]] = [
    # where the two agree
    ("direct correct", [f"{R}<answer>Paris</answer>"], "Paris", [], "em", False, 1.0, 1.0),
    ("direct wrong", [f"{R}<answer>Rome</answer>"], "Paris", [], "em", False, 0.1, 0.1),
    ("image then answer", [IMG, ANS], "Paris", [], "em", False, 0.91, 0.91),
    ("text then answer", [TXT, ANS], "Paris", [], "em", False, 0.91, 0.91),
    ("image, text, answer", [IMG, TXT, ANS], "Paris", [], "em", False, 0.91, 0.91),
    ("per-search penalty", [IMG, TXT, ANS], "Paris", [], "em", True, 0.829, 0.829),
    ("wrong after searching", [IMG, TXT, f"{R}<answer>Rome</answer>"], "Paris", [], "em", False, 0.1, 0.1),
    ("a candidate answer", [f"{R}<answer>Lutetia</answer>"], "Paris", ["Lutetia"], "em", False, 1.0, 1.0),
    ("articles and case", [f"{R}<answer>The PARIS</answer>"], "paris", [], "em", False, 1.0, 1.0),
    ("subem", [f"{R}<answer>It is Paris, France</answer>"], "Paris", [], "subem", False, 1.0, 1.0),
    ("no answer", [f"{R} I am not sure."], "Paris", [], "em", False, 0.0, 0.0),
    ("two text searches", [TXT, TXT, ANS], "Paris", [], "em", False, 0.81, 0.81),
    ("answer first, then more", [f"{R}<answer>Paris</answer>", ANS], "Paris", [], "em", False, 0.9, 0.9),
    # where they differ
    ("empty reason", ["<reason></reason><answer>Paris</answer>"], "Paris", [], "em", False, 0.9, 1.0),
    ("text between the tags", [f"{R} So: <answer>Paris</answer>"], "Paris", [], "em", False, 0.9, 1.0),
    (
        "a search tag quoted in the reasoning",
        ["<reason>No need for <search><img></search> here.</reason><answer>Paris</answer>"],
        "Paris",
        [],
        "em",
        False,
        0.9,
        0.81,
    ),
    ("an empty answer", [f"{R}<answer></answer>"], "Paris", [], "em", False, 0.0, 0.1),
    ("text after the answer", [f"{R}<answer>Paris</answer> Done."], "Paris", [], "em", False, 0.0, 0.9),
    (
        "a spaced image search",
        ["<reason>Unknown.</reason><search> <img> </search>", ANS],
        "Paris",
        [],
        "em",
        False,
        0.91,
        0.9,
    ),
    ("Unicode punctuation", [f"{R}<answer>Côte d’Ivoire</answer>"], "Côte d'Ivoire", [], "em", False, 1, 0.1),
    ("Unicode quotes", [f"{R}<answer>«Paris»</answer>"], "Paris", [], "em", False, 1.0, 0.1),
    ("subem, empty gold", [f"{R}<answer>Rome</answer>"], "", [], "subem", False, 0.1, 1.0),
    ("four turns", [IMG, TXT, TXT, ANS], "Paris", [], "em", False, 0.81, 0.81),
]


FIELDS = ("name", "turns", "gold", "candidates", "mode", "per_search", "ours", "release")


@pytest.mark.parametrize(FIELDS, CASES, ids=[c[0] for c in CASES])
def test_both_modes_case_by_case(
    name: str,
    turns: list[str],
    gold: str,
    candidates: list[str],
    mode: str,
    per_search: bool,
    ours: float,
    release: float,
) -> None:
    common = {"candidate_answers": candidates, "mode": mode, "per_search_penalty": per_search}
    assert score_trajectory(turns, gold, **common).reward == pytest.approx(ours)  # type: ignore[arg-type]
    got = score_trajectory(turns, gold, compat="release", **common)  # type: ignore[arg-type]
    assert got.reward == pytest.approx(release)


def _official_scorer() -> ModuleType | None:
    checkout = Path(os.environ.get("MMSR_RELEASE_CHECKOUT", "/nonexistent"))
    path = checkout / "mmsearch_r1" / "utils" / "reward_score_mm" / "mmsearch_r1_score.py"
    if not path.is_file():
        return None
    spec = importlib.util.spec_from_file_location("release_score", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("case", [c for c in CASES if len(c[1]) <= 3], ids=lambda c: c[0])
def test_release_mode_agrees_with_the_releases_scorer(case: tuple[object, ...]) -> None:
    official = _official_scorer()
    if official is None:
        pytest.skip("no release checkout (set MMSR_RELEASE_CHECKOUT to a clone of the release)")
    _, turns, gold, candidates, mode, per_search, _, _ = case
    golds = [gold, *candidates]  # type: ignore[list-item]
    extra = {"reward_mode": "EM" if mode == "em" else "SubEM", "use_search_count_penalty": per_search}
    theirs = official.compute_score(turns, golds, extra)
    options = {"per_search_penalty": bool(per_search), "compat": "release"}
    ours = score_trajectory(turns, gold, candidates, mode, **options)  # type: ignore[arg-type]
    assert ours.reward == pytest.approx(theirs)
