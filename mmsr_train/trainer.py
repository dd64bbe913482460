"""SearchGRPOTrainer: TRL's GRPOTrainer whose generation step is our rollout through the agent loop.

TRL 1.16 (pinned exactly: this relies on private internals, guarded by ``tests/train/test_trl_internals.py``)
offers ``rollout_func`` for custom generation, but on that path the training forward pass rebuilds
its image inputs from the dataset's images alone, so the search thumbnails that a trajectory shows
the model mid-conversation never reach it ("Image features and image tokens do not match"). Its
tools path does pass images that appear in completions, but expects JSON tool calls and tool-role
messages. This subclass overrides ``GRPOTrainer._generate`` instead:

1. the prompts of the batch (chat messages with the image embedded) become rollout tasks;
2. the rollouts run through :func:`mmsr_train.rollout.run_rollouts` with :class:`HFGenerator` (the
   model's own ``generate``, inside TRL's unwrap context) or :class:`VLLMGenerator` (``use_vllm``);
3. it returns what ``_generate`` returns on TRL's tools path: prompt ids, completion ids, the
   ``env_mask`` as ``tool_mask`` (the loss mask is ``completion_mask * tool_mask``), the images of
   each trajectory in token order, and those images again as "tool images", which sends
   ``_generate_and_score_completions`` down the branch that feeds every image to the forward pass
   (``self.tools`` is set to a marker so that branch is taken; it is never called).

The rollouts' extra fields (``turns``, ``finish_reason``, ``search_calls``, ``searches``) reach
the reward functions. Every saved checkpoint gets the prompt pack next to its weights and processor.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import torch
from trl import GRPOTrainer
from trl.models.utils import unwrap_model_for_generation

from mmsr_bench.data import Sample
from mmsr_serve.agent.events import SearchRecord
from mmsr_train.checkpoint import save_serving_files
from mmsr_train.generators import HFGenerator, VLLMGenerator
from mmsr_train.policy import TokenGenerator, trajectory_seed
from mmsr_train.rollout import IMAGE_BYTES, Rollout, RolloutEnv, RolloutTask, Wrap, run_rollouts, run_sync


def _search_environment() -> None:
    """Marker in ``GRPOTrainer.tools``: the environment is the agent loop, not a callable tool."""


def task_of(prompt: list[dict[str, Any]]) -> RolloutTask:
    """The question and image of a conversational prompt as TRL hands it over."""
    user = [m for m in prompt if m.get("role") == "user"]
    if not user:
        raise ValueError("a prompt without a user message")
    content = user[-1]["content"]
    if isinstance(content, str):
        return RolloutTask(content)
    text = "".join(part.get("text", "") for part in content if part.get("type") == "text")
    images = [p["image"] for m in user for p in m["content"] if isinstance(p, dict) and p.get("image")]
    return RolloutTask(text.strip(), images[0] if images else None)


def searches_of(rollout: Rollout) -> str:
    """A trajectory's searches in one line, for the completions table: ``image | text: query``."""

    def shown(search: SearchRecord) -> str:
        text = search.kind if search.query is None else f"{search.kind}: {search.query}"
        return f"{text} (failed)" if search.error else text

    return " | ".join(shown(s) for s in rollout.result.searches)


class SearchGRPOTrainer(GRPOTrainer):
    """GRPO on rollouts of the search agent (see the module docstring).

    ``env``: the tools, limits and prompt pack of the rollouts. ``wrap``: an optional hook that may
    replace the generator of a rollout, ``wrap(i, task, generator)`` (tests use it to script turns).
    """

    def __init__(
        self,
        *args: Any,
        env: RolloutEnv,
        wrap: Wrap | None = None,
        lr_lambda: Callable[[int], float] | None = None,
        eval_greedy: bool = False,
        held_out: Sequence[Sample] = (),
        **kwargs: Any,
    ) -> None:
        if kwargs.get("tools") or kwargs.get("rollout_func") or kwargs.get("environment_factory"):
            raise ValueError("SearchGRPOTrainer runs its own rollouts: no tools, rollout_func or environment")
        self._lr_lambda = lr_lambda
        self._eval_greedy = eval_greedy
        self.held_out = list(held_out)  # the eval dataset's samples, for the end-of-run table
        super().__init__(*args, **kwargs)
        limit = self.grpo_args.max_completion_length
        if limit is not None and env.limits.max_total_tokens > limit:
            raise ValueError(
                f"limits.max_total_tokens ({env.limits.max_total_tokens}) exceeds "
                f"max_completion_length ({limit})"
            )
        self.env = env
        self.wrap = wrap
        self.tools = [_search_environment]
        self.last_rollouts: list[Rollout] = []
        self._generate_calls = 0
        self._image_bytes: list[bytes | None] = []

    def create_scheduler(self, num_training_steps: int, optimizer: Any = None) -> Any:
        """The run's own schedule (``lr_lambda``: a factor on the peak rate per step) when it has one,
        made as transformers makes its named ones; else transformers' (``lr_scheduler_type``)."""
        if self.lr_scheduler is None and self._lr_lambda is not None:
            target = optimizer if optimizer is not None else self.optimizer
            assert target is not None, "the optimizer is made before the schedule"
            self.lr_scheduler = torch.optim.lr_scheduler.LambdaLR(target, self._lr_lambda)
            self._created_lr_scheduler = True
        return super().create_scheduler(num_training_steps, optimizer)

    @property
    def grpo_args(self) -> Any:
        """``self.args``, a ``GRPOConfig`` (typed as the base ``TrainingArguments`` upstream)."""
        return self.args

    def _generate_and_score_completions(self, inputs: list[dict[str, Any]]) -> Any:
        # A batch of only text-only rows of a dataset that also has images: TRL would build
        # images=[None, ...] from the image column, take them back after _generate and hand them
        # to the processor, which fails on None. Without the column TRL sees a text-only batch.
        if inputs and "image" in inputs[0] and all(example.get("image") is None for example in inputs):
            inputs = [{k: v for k, v in example.items() if k != "image"} for example in inputs]
        # _generate sees only the prompts (same order): hand it each row's image file bytes
        self._image_bytes = [example.get(IMAGE_BYTES) for example in inputs]
        try:
            return super()._generate_and_score_completions(inputs)
        finally:
            self._image_bytes = []

    def _generate(self, prompts: list[Any]) -> tuple[Any, ...]:
        model: Any = self.model
        mode = "train" if model.training else "eval"
        tasks = [task_of(p) for p in prompts]
        if len(self._image_bytes) == len(tasks):  # the files' bytes, loaded as the server loads them
            tasks = [
                dataclasses.replace(t, image=data) if data is not None and t.image is not None else t
                for t, data in zip(tasks, self._image_bytes, strict=True)
            ]
        rollouts = self.rollout(tasks, greedy=mode == "eval" and self._eval_greedy)
        self.last_rollouts = rollouts
        traces = [r.trace for r in rollouts]
        images = [t.images or None for t in traces]
        has_images = any(i is not None for i in images)
        texts = self._tokenizer.batch_decode([t.completion_ids for t in traces], skip_special_tokens=True)
        completions = [[{"role": "assistant", "content": text}] for text in texts]
        logprobs = [t.logprobs for t in traces]
        extra = {
            "turns": [r.turns for r in rollouts],
            "finish_reason": [r.result.finish_reason for r in rollouts],
            "search_calls": [r.result.search_calls for r in rollouts],
            "searches": [searches_of(r) for r in rollouts],
        }
        self._log_rollouts(mode, rollouts)
        return (
            [t.prompt_ids for t in traces],
            [t.completion_ids for t in traces],
            [t.env_mask for t in traces],
            completions,
            logprobs if all(lp is not None for lp in logprobs) else None,
            extra,
            images if has_images else None,
            [list(t.images) for t in traces],
        )

    def rollout(self, tasks: list[RolloutTask], *, greedy: bool = False) -> list[Rollout]:
        """Run ``tasks`` through the agent loop with the policy as it is now (in-process or vLLM).

        Every process must call it alike (vLLM's batch sizes are agreed across processes)."""
        # Each trajectory samples from its own seed (the run's seed, this process, this call, its
        # index): concurrent trajectories would otherwise draw from the one global generator in
        # whatever order they reach it, and two runs with one seed would differ.
        seed = trajectory_seed(self.args.seed, self.accelerator.process_index, self._generate_calls)
        self._generate_calls += 1
        env = self.env
        if greedy:
            env = dataclasses.replace(env, sampling=dataclasses.replace(env.sampling, temperature=0.0))
        with self._generator() as generator:
            return run_sync(
                lambda: run_rollouts(tasks, generator, self.processing_class, env, wrap=self.wrap, seed=seed)
            )

    @contextmanager
    def _generator(self) -> Iterator[Any]:
        if self.use_vllm:
            if self.state.global_step != self._last_loaded_step:
                self.vllm_generation.sync_weights()
                self._last_loaded_step = self.state.global_step
            yield VLLMGenerator(
                self.vllm_generation,
                self._tokenizer,
                eos_ids=self.eos_token_ids,
                largest=self._largest,
            )
            return
        with (
            unwrap_model_for_generation(
                self.model_wrapped,
                self.accelerator,
                gather_deepspeed3_params=self.grpo_args.ds3_gather_for_generation,
                gradient_checkpointing_kwargs=self.grpo_args.gradient_checkpointing_kwargs,
            ) as unwrapped,
            torch.no_grad(),
            self._dist.summon_full_params(self.model_wrapped, recurse=False),
        ):
            generator: TokenGenerator = HFGenerator(
                unwrapped,
                self.processing_class,
                temperature=self.temperature,
                top_p=self.top_p,
                top_k=self.top_k,
            )
            yield generator

    def _largest(self, value: int) -> int:
        """The largest of ``value`` over all processes (every process must call it alike)."""
        values = self.accelerator.gather(torch.tensor([value], device=self.accelerator.device))
        return int(values.max().item())

    def _log_rollouts(self, mode: str, rollouts: list[Rollout]) -> None:
        """TRL's length metrics (model tokens only), plus turns and searches per trajectory."""
        device = self.accelerator.device
        model_tokens = torch.tensor([float(sum(r.trace.env_mask)) for r in rollouts], device=device)
        total = torch.tensor(
            [float(len(r.trace.prompt_ids) + len(r.trace.completion_ids)) for r in rollouts], device=device
        )
        rows = torch.tensor(
            [
                [
                    float(len(r.result.turns)),
                    float(r.result.search_calls["image"]),
                    float(r.result.search_calls["text"]),
                    float(bool(r.result.searches)),
                    float(r.result.finish_reason == "length"),
                ]
                for r in rollouts
            ],
            device=device,
        )
        lengths, total, rows = (self.accelerator.gather(x) for x in (model_tokens, total, rows))
        if mode == "train":
            self.state.num_input_tokens_seen += int(total.sum().item())
        metrics = self._metrics[mode]
        metrics["num_tokens"] = [self.state.num_input_tokens_seen]
        metrics["completions/mean_length"].append(lengths.mean().item())
        metrics["completions/min_length"].append(lengths.min().item())
        metrics["completions/max_length"].append(lengths.max().item())
        means = rows.mean(dim=0).tolist()
        for name, value in zip(
            (
                "turns/mean",
                "search/image_calls",
                "search/text_calls",
                "search/ratio",
                "completions/clipped_ratio",
            ),
            means,
            strict=True,
        ):
            metrics[name].append(value)

    def save_model(self, output_dir: str | None = None, _internal_call: bool = False) -> None:
        super().save_model(output_dir, _internal_call)
        if self.args.should_save:
            save_serving_files(output_dir or str(self.args.output_dir), self.env.prompt_pack, self.env.agent)
