"""Fails loudly when the TRL internals that SearchGRPOTrainer relies on change.

SearchGRPOTrainer overrides the private ``GRPOTrainer._generate`` and steers the forward pass of
``_generate_and_score_completions`` down its tools branch (see mmsr_train/trainer.py). If one of
these checks fails after a TRL upgrade, re-read that code in the new version, adapt the trainer,
then update the pin in pyproject.toml and these markers. The behaviour is checked end to end by
tests/train/test_grpo_step.py (images reach the forward pass, env_mask reaches the loss).

Importing ``trl.GRPOTrainer`` takes seconds, so the tests that read it are marked slow and import it
through the ``grpo_trainer`` fixture, not at collection.
"""

from __future__ import annotations

import inspect
import re
from pathlib import Path
from typing import Any

import pytest
import trl

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def grpo_trainer() -> Any:
    from trl import GRPOTrainer

    return GRPOTrainer


def source(function: object) -> str:
    return re.sub(r"\s+", " ", inspect.getsource(function))  # type: ignore[arg-type]


def test_trl_is_pinned_to_the_version_the_trainer_was_written_for() -> None:
    assert trl.__version__ == "1.16.0"
    assert '"trl==1.16.0"' in (ROOT / "pyproject.toml").read_text()


@pytest.mark.slow
def test_generate_takes_prompts_and_returns_eight_fields_in_this_order(grpo_trainer: Any) -> None:
    assert list(inspect.signature(grpo_trainer._generate).parameters) == ["self", "prompts"]
    assert (
        "return prompt_ids, completion_ids, tool_mask, completions, logprobs, extra_fields, images, "
        "tool_images" in source(grpo_trainer._generate)
    )
    caller = source(grpo_trainer._generate_and_score_completions)
    assert (
        "( prompt_ids_list, completion_ids_list, tool_mask_list, completions, sampling_per_token_logps_list, "
        "extra_fields, images, tool_images, ) = self._generate(prompts)" in caller
    )
    assert "if images is None: images = dataset_images" in caller


@pytest.mark.slow
def test_tool_images_send_every_image_to_the_forward_pass(grpo_trainer: Any) -> None:
    code = source(grpo_trainer._generate_and_score_completions)
    branch = "if self.tools and any(imgs for imgs in tool_images) and self._is_vlm:"
    assert code.count(branch) == 2
    assert "flat_images = [img for img_list in images if img_list for img in img_list]" in code
    assert 'self.processing_class.image_processor(images=flat_images, return_tensors="pt")' in code
    assert "mm_ids[prompt_completion_ids == self._image_pad_token_id] = 1" in code
    assert "num_images = [len(img_list) if img_list else 0 for img_list in images]" in code


@pytest.mark.slow
def test_tool_mask_is_the_loss_mask_and_extra_fields_reach_the_rewards(grpo_trainer: Any) -> None:
    code = source(grpo_trainer._generate_and_score_completions)
    assert "tool_mask = [torch.tensor(mask) for mask in tool_mask_list]" in code
    assert "loss_mask = completion_mask if tool_mask is None else completion_mask * tool_mask" in code
    assert 'output["tool_mask"] = tool_mask' in code
    assert "inp[key] = values[i]" in code  # extra_fields merged into the reward inputs
    assert 'completion_mask * inputs["tool_mask"]' in source(grpo_trainer._compute_loss)


@pytest.mark.slow
def test_the_attributes_the_trainer_reads_are_set_where_it_expects(grpo_trainer: Any) -> None:
    init = source(grpo_trainer.__init__)
    for assignment in (
        "self.tools = tools",
        "self._standalone_tools = tools",
        "self.eos_token_ids = eos_token_ids",
        "self._image_pad_token_id = tid",
        "self.temperature = args.temperature",
        "self.top_p = args.top_p",
        "self.top_k = args.top_k",
        "self._dist = DistributedBackend(self.accelerator)",
    ):
        assert assignment in init, assignment
    single = source(grpo_trainer._generate_single_turn)
    assert "self.vllm_generation.sync_weights()" in single and "self._last_loaded_step" in single
    assert "unwrap_model_for_generation( self.model_wrapped, self.accelerator," in single
    tools_setup = "for tool in self._standalone_tools + methods:"
    assert tools_setup in source(grpo_trainer._generate_and_score_completions)


def test_vllm_generation_takes_token_ids_and_reads_its_length_limit_per_call() -> None:
    from trl.generation.vllm_generation import VLLMGeneration

    params = list(inspect.signature(VLLMGeneration.generate).parameters)
    assert params[:4] == ["self", "prompts", "images", "num_generations"]
    code = source(VLLMGeneration.generate)
    assert "max_completion_length = self.max_completion_length" in code
    assert "return prompt_ids, completion_ids, logprobs, logprob_token_ids" in code
    assert "process_slice = slice( accelerator.process_index * len(prompts)," in code  # equal shares
