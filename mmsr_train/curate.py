"""Search-balanced curation: label each question search-free or search-required, write a balanced set.

As the paper built FVQA-train: a model is rolled out ``k`` times per question with search off and
``k`` times with search on (through the SDK's :class:`~mmsr_serve.agent.SearchAgent`, so any
backend works: ``hf`` in-process, or a vLLM server through ``openai``). Labels, from the outcomes:

- ``search_free``: at least ``min_correct`` of the search-off rollouts answer correctly;
- ``search_required``: otherwise, at least ``min_correct`` of the search-on rollouts do;
- ``unsolved``: neither (dropped from the balanced set: no rollout shows the model a reward).

"Search off" keeps the protocol and its prompt, with both search limits at 0 (the prompt says so, and
a search request ends the rollout); ``off_mode="plain"`` asks the bare question instead (one plain
turn, the whole reply is the answer), for models never trained on the protocol.

The balanced set takes ``search_required_ratio`` of its questions from the search-required ones
(FVQA-train: 3,400 of 5,000 = 0.68) and the rest from the search-free ones, as many as the scarcer
label allows (or ``size``), sampled with ``seed``.
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Literal

from tqdm import tqdm  # type: ignore[import-untyped]

from mmsr_bench.data import Sample
from mmsr_serve.agent.agent import SearchAgent
from mmsr_serve.agent.limits import Limits
from mmsr_serve.agent.loop import Sampling
from mmsr_train.reward import MatchMode, is_correct

Label = Literal["search_free", "search_required", "unsolved"]
LABELS: tuple[Label, ...] = ("search_free", "search_required", "unsolved")


@dataclass(frozen=True)
class Labelled:
    sample: Sample
    label: Label
    correct_without_search: int
    correct_with_search: int


@dataclass(frozen=True)
class CurationReport:
    labels: dict[str, int]
    """Questions per label."""
    selected: dict[str, int]
    """Questions per label in the balanced set."""


async def label_samples(
    samples: Sequence[Sample],
    agent: SearchAgent,
    *,
    k: int = 8,
    min_correct: int = 1,
    mode: MatchMode = "em",
    off_mode: Literal["protocol", "plain"] = "protocol",
    sampling: Sampling | None = None,
    concurrency: int = 4,
    progress: bool = True,
) -> list[Labelled]:
    """Roll out each question ``k`` times without and ``k`` times with search, and label it.

    The search-on rollouts are skipped for a question already labelled search-free. Default
    sampling: temperature 1.0.
    """
    sampling = sampling or Sampling(temperature=1.0)
    on_limits = replace(agent.limits, recover=False)
    off_limits: Limits = replace(on_limits, max_image_searches=0, max_text_searches=0)
    gate = asyncio.Semaphore(concurrency)

    async def correct(sample: Sample, search: bool) -> int:
        async with gate:
            result = await agent.run(
                sample.question,
                sample.image_bytes(),
                limits=on_limits if search else off_limits,
                sampling=sampling,
                mode="off" if not search and off_mode == "plain" else "auto",
            )
        return int(is_correct(result.answer, sample.answers, mode))

    async def one(sample: Sample) -> Labelled:
        off = sum(await asyncio.gather(*(correct(sample, False) for _ in range(k))))
        label: Label = "search_free"
        on = 0
        if off < min_correct:
            on = sum(await asyncio.gather(*(correct(sample, True) for _ in range(k))))
            label = "search_required" if on >= min_correct else "unsolved"
        return Labelled(replace(sample, category=label), label, off, on)

    with tqdm(total=len(samples), desc="labelling", disable=not progress) as bar:

        async def tracked(sample: Sample) -> Labelled:
            item = await one(sample)
            bar.update()
            return item

        return list(await asyncio.gather(*(tracked(s) for s in samples)))


def balance(
    labelled: Sequence[Labelled],
    *,
    search_required_ratio: float = 0.68,
    size: int | None = None,
    seed: int = 0,
) -> list[Sample]:
    """The balanced set: ``search_required_ratio`` of it search-required, the rest search-free."""
    if not 0 <= search_required_ratio <= 1:
        raise ValueError("search_required_ratio must lie in [0, 1]")
    pools = {label: [item.sample for item in labelled if item.label == label] for label in LABELS[:2]}
    shares: dict[Label, float] = {
        "search_required": search_required_ratio,
        "search_free": 1 - search_required_ratio,
    }
    fit = min((len(pools[label]) / share for label, share in shares.items() if share > 0), default=0.0)
    most = int(fit + 1e-9)  # 34 / 0.68 is 49.999...
    total = most if size is None else min(size, most)
    rng = random.Random(seed)
    chosen: list[Sample] = []
    for label in shares:
        take = round(total * shares[label])
        chosen += rng.sample(pools[label], min(take, len(pools[label])))
    rng.shuffle(chosen)
    return chosen


def report(labelled: Sequence[Labelled], selected: Sequence[Sample]) -> CurationReport:
    counts = Counter(item.label for item in labelled)
    chosen = Counter(sample.category for sample in selected)
    return CurationReport(
        {label: counts[label] for label in LABELS}, {label: chosen[label] for label in LABELS[:2]}
    )
