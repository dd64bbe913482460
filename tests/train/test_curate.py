"""Search-balanced curation: labels from search-off / search-on rollouts, then a balanced set."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from mmsr_bench.data import Sample, load_samples, write_jsonl
from mmsr_serve.agent.agent import SearchAgent
from mmsr_serve.backends.base import Completion, GenerateRequest, ModelBackend
from mmsr_serve.search.local import LocalIndex
from mmsr_train.curate import Labelled, balance, label_samples, report

R = "<reason>r</reason>"


class Oracle(ModelBackend):
    """Knows "free" questions; finds "required" ones with one web search; never solves "hard" ones."""

    def __init__(self) -> None:
        self.calls = 0

    async def stream(self, request: GenerateRequest) -> AsyncIterator[Completion]:
        self.calls += 1
        first = request.messages[0].text
        searched = len(request.messages) > 1
        if "free" in first:
            text = f"{R}<answer>yes</answer>"
        elif "required" in first and "at most 0 web" not in first:
            text = f"{R}<answer>yes</answer>" if searched else f"{R}<text_search>glass heron</text_search>"
        else:
            text = f"{R}<answer>no idea</answer>"
        yield Completion(text, "stop")


def samples() -> list[Sample]:
    kinds = ["free"] * 4 + ["required"] * 6 + ["hard"] * 2
    return [Sample(f"A {kind} question {i}?", ("yes",), id=f"{kind}-{i}") for i, kind in enumerate(kinds)]


async def test_labels_follow_the_outcomes(local_index: LocalIndex) -> None:
    oracle = Oracle()
    agent = SearchAgent(oracle, local_index)
    labelled = await label_samples(samples(), agent, k=2, progress=False)
    assert [item.label for item in labelled] == ["search_free"] * 4 + ["search_required"] * 6 + [
        "unsolved"
    ] * 2
    free, required, hard = labelled[0], labelled[4], labelled[-1]
    assert (free.correct_without_search, free.correct_with_search) == (2, 0)  # search-on skipped
    assert (required.correct_without_search, required.correct_with_search) == (0, 2)
    assert (hard.correct_without_search, hard.correct_with_search) == (0, 0)
    assert oracle.calls == 4 * 2 + 6 * (2 + 2 * 2) + 2 * (2 + 2)
    assert labelled[4].sample.category == "search_required"


def labelled_set(free: int, required: int) -> list[Labelled]:
    items = [
        Labelled(Sample(f"f{i}", ("a",), category="search_free"), "search_free", 1, 0) for i in range(free)
    ]
    items += [
        Labelled(Sample(f"r{i}", ("a",), category="search_required"), "search_required", 0, 1)
        for i in range(required)
    ]
    return [*items, Labelled(Sample("u", ("a",), category="unsolved"), "unsolved", 0, 0)]


@pytest.mark.parametrize(
    ("free", "required", "ratio", "size", "expected"),
    [
        (16, 34, 0.68, None, {"search_required": 34, "search_free": 16}),
        (100, 34, 0.68, None, {"search_required": 34, "search_free": 16}),  # required is scarce
        (5, 100, 0.5, None, {"search_required": 5, "search_free": 5}),  # free is scarce
        (100, 100, 0.68, 25, {"search_required": 17, "search_free": 8}),
        (10, 10, 1.0, None, {"search_required": 10, "search_free": 0}),
    ],
)
def test_balance_keeps_the_ratio(
    free: int, required: int, ratio: float, size: int | None, expected: dict[str, int]
) -> None:
    items = labelled_set(free, required)
    chosen = balance(items, search_required_ratio=ratio, size=size, seed=1)
    summary = report(items, chosen)
    assert summary.selected == expected
    assert summary.labels == {"search_free": free, "search_required": required, "unsolved": 1}
    assert balance(items, search_required_ratio=ratio, size=size, seed=1) == chosen  # seeded


def test_the_balanced_set_is_written_as_jsonl(tmp_path: Path) -> None:
    chosen = balance(labelled_set(3, 6), search_required_ratio=2 / 3)
    (path := write_jsonl(chosen, tmp_path / "balanced.jsonl"))
    categories = [s.category for s in load_samples(path)]
    assert sorted(categories) == ["search_free"] * 3 + ["search_required"] * 6
