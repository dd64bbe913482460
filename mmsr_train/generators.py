"""Token generators behind :class:`~mmsr_train.policy.PolicyBackend`.

- :class:`HFGenerator`: the model's own ``generate`` (CPU, or one GPU without vLLM). One turn at a
  time; the searches of other trajectories overlap with it.
- :class:`VLLMGenerator`: TRL's vLLM generation (colocate or server mode). The turns of a rollout
  batch are gathered into one vLLM call per *round* (round k = the k-th turn of every trajectory
  still running), see :class:`RoundBatcher`.
- :class:`TeacherGenerator`: returns given turn texts as tokens (teacher forcing), then hands over
  to another generator. SFT data is built with it, and tests script turns with it.

torch and transformers are imported when a generator runs, never by importing this module.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any, Protocol, runtime_checkable

from mmsr_serve.backends.hf_core import HFGeneration, finish_reason
from mmsr_train.policy import (
    TokenGenerator,
    TokenOutput,
    TokenRequest,
    placeholder_ids,
)


class HFGenerator:
    """Sample with a transformers model, one request at a time, through the generation core that
    serving uses (:class:`~mmsr_serve.backends.hf_core.HFGeneration`); the image placeholder
    tokens are never sampled.

    ``temperature`` 0 means greedy. A request's own temperature / top_p / seed win over these.
    """

    def __init__(
        self,
        model: Any,
        processor: Any,
        *,
        temperature: float = 1.0,
        top_p: float = 1.0,
        top_k: int | None = None,
    ) -> None:
        self.core = HFGeneration(model, processor)
        self.tokenizer = processor.tokenizer
        self.temperature, self.top_p, self.top_k = temperature, top_p, top_k
        self.eos_ids = self.core.eos_ids
        self.suppress = sorted(placeholder_ids(processor))
        self._lock = asyncio.Lock()

    async def generate(self, request: TokenRequest) -> TokenOutput:
        async with self._lock:
            return await asyncio.to_thread(self._generate, request)

    def _generate(self, request: TokenRequest) -> TokenOutput:
        generated = self.core.generate(
            self.core.encode_ids(request.token_ids, request.images or ()),
            max_new_tokens=request.max_new_tokens,
            temperature=self.temperature if request.temperature is None else request.temperature,
            top_p=request.top_p or self.top_p,
            top_k=self.top_k,
            stop=request.stop,
            seed=request.seed,
            suppress_tokens=self.suppress,
        )
        text = self.tokenizer.decode(generated.token_ids, skip_special_tokens=True)
        return TokenOutput(
            generated.token_ids, self.core.finish(generated, text, request.stop, request.max_new_tokens)
        )


class TeacherGenerator:
    """Serve ``turns`` (texts) as sampled tokens, in order; then delegate to ``then``.

    Each text is tokenised alone, so it must hold what the model would write (no chat glue).
    """

    def __init__(self, tokenizer: Any, turns: Iterable[str], then: TokenGenerator | None = None) -> None:
        self.tokenizer = tokenizer
        self.turns = deque(turns)
        self.then = then

    async def generate(self, request: TokenRequest) -> TokenOutput:
        if not self.turns:
            if self.then is None:
                raise RuntimeError("TeacherGenerator: no turn left and no generator to hand over to")
            return await self.then.generate(request)
        text = self.turns.popleft()
        ids = [int(i) for i in self.tokenizer.encode(text, add_special_tokens=False)]
        if len(ids) > request.max_new_tokens:
            return TokenOutput(ids[: request.max_new_tokens], "length")
        return TokenOutput(ids, "stop")


@runtime_checkable
class BatchTokenGenerator(Protocol):
    """Samples one turn for each of several token sequences in one call."""

    async def generate_batch(self, requests: list[TokenRequest]) -> list[TokenOutput]: ...


class RoundBatcher:
    """Gather the turns of ``members`` concurrent trajectories into one call per round.

    A round is flushed once every member still running has submitted its turn, so trajectories
    advance in lockstep and the k-th call holds the k-th turn of each. :meth:`drain` makes empty
    calls until ``rounds`` calls were made, so that every process of a distributed run makes the
    same number of calls (vLLM's server and tensor-parallel modes communicate inside each call).
    """

    def __init__(
        self,
        call: Callable[[list[TokenRequest]], Awaitable[list[TokenOutput]]],
        members: int,
        rounds: int,
    ) -> None:
        self._call = call
        self._members = members
        self._rounds = rounds
        self.calls = 0
        self._pending: list[tuple[TokenRequest, asyncio.Future[TokenOutput]]] = []
        self._flushing = False
        self._task: asyncio.Task[None] | None = None

    def member(self) -> TokenGenerator:
        return _Member(self)

    async def submit(self, request: TokenRequest) -> TokenOutput:
        future: asyncio.Future[TokenOutput] = asyncio.get_running_loop().create_future()
        self._pending.append((request, future))
        self._maybe_flush()
        return await future

    def leave(self) -> None:
        """A member finished its trajectory (or failed): stop waiting for it."""
        self._members -= 1
        self._maybe_flush()

    def _maybe_flush(self) -> None:
        if self._pending and not self._flushing and len(self._pending) >= self._members:
            self._flushing = True
            batch, self._pending = self._pending, []
            self._task = asyncio.ensure_future(self._flush(batch))

    async def _flush(self, batch: list[tuple[TokenRequest, asyncio.Future[TokenOutput]]]) -> None:
        self.calls += 1
        try:
            outputs = await self._call([request for request, _ in batch])
        except BaseException as exc:
            for _, future in batch:
                future.set_exception(exc)
        else:
            for (_, future), output in zip(batch, outputs, strict=True):
                future.set_result(output)
        finally:
            self._flushing = False
        self._maybe_flush()

    async def drain(self) -> None:
        while self.calls < self._rounds:
            self.calls += 1
            await self._call([])


class _Member:
    def __init__(self, batcher: RoundBatcher) -> None:
        self._batcher = batcher

    async def generate(self, request: TokenRequest) -> TokenOutput:
        return await self._batcher.submit(request)


class VLLMGenerator:
    """Generate through TRL's ``VLLMGeneration`` (``trainer.vllm_generation``), one call per round.

    Stop strings and sampling settings are those of the trainer's vLLM set-up (``generation_kwargs``
    carries the closing tags, see :mod:`mmsr_train.grpo`); ``max_tokens`` of a call is the largest
    of its requests over all processes, and each output is cut to its own request's limit
    afterwards (a prefix of a sample is a sample). ``largest`` returns the largest of a value over
    all processes (an all-reduce): every process pads its call to the largest batch with one-token
    dummy prompts, because TRL's server mode slices the gathered results by equal shares, and asks
    for the largest token limit, because TRL sends the main process's limit for the whole call (a
    process with no request left would otherwise cut every other's later turns to one token).
    """

    def __init__(
        self,
        vllm_generation: Any,
        tokenizer: Any,
        *,
        eos_ids: Sequence[int],
        largest: Callable[[int], int] = lambda n: n,
    ) -> None:
        self.vllm = vllm_generation
        self.tokenizer = tokenizer
        self.eos_ids = list(eos_ids)
        self.largest = largest

    async def generate_batch(self, requests: list[TokenRequest]) -> list[TokenOutput]:
        size = self.largest(len(requests))
        if size == 0:  # the same on every process: the largest batch is empty
            return []
        limit = self.largest(max([r.max_new_tokens for r in requests], default=1))
        pad = [self.tokenizer.pad_token_id]
        prompts = [r.token_ids for r in requests] + [pad] * (size - len(requests))
        images: list[list[Any] | None] = [r.images or None for r in requests]
        images += [None] * (size - len(requests))
        saved = self.vllm.max_completion_length
        self.vllm.max_completion_length = limit
        try:
            _, completions, logprobs, logprob_ids = self.vllm.generate(
                prompts=prompts,
                images=images if any(i is not None for i in images) else None,
                num_generations=1,
            )
        finally:
            self.vllm.max_completion_length = saved
        outputs = []
        for i, request in enumerate(requests):
            ids = [int(t) for t in completions[i][: request.max_new_tokens]]
            lps = None
            if logprobs is not None:
                choices = logprob_ids[i] if logprob_ids is not None else None
                lps = [
                    _sampled_logprob(logprobs[i][j], choices[j] if choices else None, token)
                    for j, token in enumerate(ids)
                ]
            text = self.tokenizer.decode(ids, skip_special_tokens=True)
            finish = finish_reason(ids, text, request.stop, request.max_new_tokens, self.eos_ids)
            outputs.append(TokenOutput(ids, finish, lps))
        return outputs


def _sampled_logprob(values: Sequence[float | None], token_ids: Sequence[int] | None, token: int) -> float:
    """The log-probability of the sampled token among vLLM's ranked candidates (NaN when unknown)."""
    index = list(token_ids).index(token) if token_ids is not None and token in token_ids else 0
    value = values[index]
    return float("nan") if value is None else float(value)
