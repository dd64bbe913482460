"""Rollouts: the serving agent loop, run with a token-level policy backend.

:func:`run_rollout` builds a :class:`~mmsr_serve.agent.SearchAgent` (the SDK's entry point, so the
first turn, image loading, prompts, parser, limits and result rendering are the ones served) over
a :class:`~mmsr_train.policy.PolicyBackend`, runs it, and returns the loop's result with the
trajectory's token trace. :func:`run_rollouts` runs a batch concurrently: with a batch generator
(vLLM) the turns of all trajectories share one generation call per round.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from mmsr_serve.agent.agent import SearchAgent
from mmsr_serve.agent.events import AgentResult
from mmsr_serve.agent.limits import Limits
from mmsr_serve.agent.loop import Sampling, Tools
from mmsr_serve.agent.prompts import PromptPack, default_pack, load_pack
from mmsr_serve.agent.protocol import SearchMode
from mmsr_serve.config import AgentConfig
from mmsr_serve.images import ImageSource
from mmsr_train.generators import BatchTokenGenerator, RoundBatcher
from mmsr_train.policy import PolicyBackend, TokenGenerator, TokenTrace, trajectory_seed

T = TypeVar("T")
IMAGE_BYTES = "image_bytes"
"""The training dataset's column of each question's image file bytes (what a rollout loads)."""
TRAINING_LIMITS = Limits(recover=False)
"""The paper's training limits: 3 turns, searches 1 image / 2 text, 2048 tokens a turn, 8192 in all."""


@dataclass(frozen=True)
class RolloutEnv:
    """What the model interacts with: the search tools, the limits and the prompt pack."""

    tools: Tools
    limits: Limits = TRAINING_LIMITS
    pack: PromptPack | None = None
    sampling: Sampling = field(default_factory=Sampling)
    agent: AgentConfig | None = None
    """The configuration the tools, limits and pack were built from (checkpoints record it)."""

    @property
    def prompt_pack(self) -> PromptPack:
        return self.pack or default_pack()

    @classmethod
    def from_config(
        cls, agent: AgentConfig, *, sampling: Sampling | None = None, pack: PromptPack | None = None
    ) -> RolloutEnv:
        """The environment the serving builders make of ``agent``: the same search tools, the same
        limits (as training runs them: a malformed turn ends the trajectory), the same pack."""
        pack_file = agent.prompt_pack_file()
        return cls(
            tools=build_tools(agent),
            limits=agent.limits(recover=False),
            pack=pack or (load_pack(pack_file) if pack_file else None),
            sampling=sampling or Sampling(),
            agent=agent,
        )


def build_tools(agent: AgentConfig) -> Tools:
    """The search tools of ``agent`` (:meth:`AgentConfig.build_search`), the local index built now."""
    from mmsr_serve.errors import ConfigError

    tools = agent.build_search()
    if tools.image is None and tools.text is None:
        raise ConfigError("no search tools: name providers, or pass a corpus for the local index (--index)")
    if tools.local is not None:
        tools.local.ensure_index()
    return Tools(tools.image, tools.text)


@dataclass(frozen=True)
class RolloutTask:
    question: str
    image: ImageSource | None = None
    mode: SearchMode = "auto"
    """``always`` replays the RAG workflow (the loop searches the image first); SFT data only."""


@dataclass(frozen=True)
class Rollout:
    result: AgentResult
    trace: TokenTrace

    @property
    def turns(self) -> list[str]:
        """The model turn texts, as the reward reads them."""
        return [turn.text for turn in self.result.turns]


async def run_rollout(
    task: RolloutTask, generator: TokenGenerator, processor: Any, env: RolloutEnv, *, seed: int | None = None
) -> Rollout:
    """One trajectory; ``seed`` seeds its sampling (each turn's draw from ``seed`` and the turn),
    so that it does not depend on the order concurrent trajectories reach the generator."""
    backend = PolicyBackend(generator, processor, max_total_tokens=env.limits.max_total_tokens)
    agent = SearchAgent(
        backend,
        image_search=env.tools.image,
        text_search=env.tools.text,
        limits=env.limits,
        pack=env.prompt_pack,
    )
    sampling = env.sampling if seed is None else dataclasses.replace(env.sampling, seed=seed)
    result = await agent.run(task.question, task.image, sampling=sampling, mode=task.mode)
    return Rollout(result, backend.finish(result))


Wrap = Callable[[int, RolloutTask, TokenGenerator], TokenGenerator]
"""``wrap(i, task, generator)`` may return another generator for the i-th task of a batch."""


async def run_rollouts(
    tasks: Sequence[RolloutTask],
    generator: TokenGenerator | BatchTokenGenerator,
    processor: Any,
    env: RolloutEnv,
    *,
    wrap: Wrap | None = None,
    seed: int | None = None,
) -> list[Rollout]:
    """Run every task concurrently; ``wrap`` may substitute the generator of a task (tests script
    turns). With ``seed``, task ``i`` samples from its own seed (derived from ``seed`` and ``i``)."""

    def seed_of(i: int) -> int | None:
        return None if seed is None else trajectory_seed(seed, i)

    if isinstance(generator, BatchTokenGenerator):
        batcher = RoundBatcher(generator.generate_batch, len(tasks), rounds=env.limits.max_turns)

        async def one(i: int, task: RolloutTask) -> Rollout:
            try:
                member = batcher.member()
                generator_i = wrap(i, task, member) if wrap else member
                return await run_rollout(task, generator_i, processor, env, seed=seed_of(i))
            finally:
                batcher.leave()

        rollouts = await asyncio.gather(*(one(i, t) for i, t in enumerate(tasks)))
        await batcher.drain()
        return list(rollouts)
    shared: TokenGenerator = generator
    return list(
        await asyncio.gather(
            *(
                run_rollout(t, wrap(i, t, shared) if wrap else shared, processor, env, seed=seed_of(i))
                for i, t in enumerate(tasks)
            )
        )
    )


def run_sync(make: Callable[[], Awaitable[T]]) -> T:
    """Run a coroutine to completion from synchronous code, also when an event loop is running."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(_await(make))
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, _await(make)).result()


async def _await(make: Callable[[], Awaitable[T]]) -> T:
    return await make()
