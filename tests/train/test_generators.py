"""Token generators: HF generate, vLLM rounds (with TRL's generation object faked) and teacher forcing."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from mmsr_serve.agent.loop import Tools
from mmsr_serve.search.local import LocalIndex
from mmsr_train.generators import HFGenerator, RoundBatcher, TeacherGenerator, VLLMGenerator
from mmsr_train.policy import TokenOutput, TokenRequest
from mmsr_train.rollout import RolloutEnv, RolloutTask, run_rollouts, run_sync


class FakeBatch:
    """A batch generator whose k-th call answers every trajectory with its k-th scripted turn."""

    def __init__(self, tokenizer: Any, scripts: dict[str, list[str]]) -> None:
        self.tokenizer = tokenizer
        self.scripts = scripts
        self.calls: list[int] = []

    async def generate_batch(self, requests: list[TokenRequest]) -> list[TokenOutput]:
        self.calls.append(len(requests))
        await asyncio.sleep(0)
        outputs = []
        for request in requests:
            prompt = self.tokenizer.decode(request.token_ids)
            question = next(q for q in self.scripts if q in prompt)
            text = self.scripts[question].pop(0)
            outputs.append(TokenOutput(self.tokenizer.encode(text, add_special_tokens=False), "stop"))
        return outputs


R = "<reason>r</reason>"


def test_rounds_batch_the_turns_of_all_trajectories(processor: Any, index: LocalIndex) -> None:
    scripts = {
        "Question one": [f"{R}<answer>a</answer>"],
        "Question two": [f"{R}<text_search>glass heron</text_search>", f"{R}<answer>b</answer>"],
        "Question three": [
            f"{R}<text_search>copper falcon</text_search>",
            f"{R}<text_search>granite stag</text_search>",
            f"{R}<answer>c</answer>",
        ],
    }
    batch = FakeBatch(processor.tokenizer, scripts)
    tasks = [RolloutTask(q) for q in scripts]
    runs = run_sync(lambda: run_rollouts(tasks, batch, processor, RolloutEnv(Tools(index, index))))
    assert [r.result.answer for r in runs] == ["a", "b", "c"]
    assert batch.calls == [3, 2, 1]  # round k holds the k-th turn of every running trajectory


def test_every_process_makes_the_same_number_of_calls(processor: Any, index: LocalIndex) -> None:
    batch = FakeBatch(processor.tokenizer, {"Only": [f"{R}<answer>a</answer>"]})
    run_sync(lambda: run_rollouts([RolloutTask("Only")], batch, processor, RolloutEnv(Tools(index, index))))
    assert batch.calls == [1, 0, 0]  # drained up to max_turns rounds with empty calls


async def test_a_failing_round_fails_its_members_and_the_batcher_moves_on() -> None:
    async def call(requests: list[TokenRequest]) -> list[TokenOutput]:
        raise RuntimeError("vLLM died")

    batcher = RoundBatcher(call, members=2, rounds=1)
    request = TokenRequest([1], [], max_new_tokens=1)
    results = await asyncio.gather(batcher.submit(request), batcher.submit(request), return_exceptions=True)
    assert all(isinstance(r, RuntimeError) for r in results)


class FakeVLLMGeneration:
    """The surface of TRL's VLLMGeneration that VLLMGenerator uses."""

    def __init__(self) -> None:
        self.max_completion_length = 99
        self.seen: list[dict[str, Any]] = []

    def generate(self, prompts: list[list[int]], images: Any, num_generations: int) -> tuple[Any, ...]:
        self.seen.append(
            {"prompts": prompts, "images": images, "n": num_generations, "max": self.max_completion_length}
        )
        completions = [[5, 6, 7, 8, 9][: self.max_completion_length] for _ in prompts]
        logprobs = [[[-0.1, -2.0] for _ in c] for c in completions]
        token_ids = [[[9, t] if j == 1 else [t, 9] for j, t in enumerate(c)] for c in completions]
        return prompts, completions, logprobs, token_ids


async def test_vllm_generator_pads_to_the_largest_share_and_cuts_each_output(processor: Any) -> None:
    fake = FakeVLLMGeneration()
    gen = VLLMGenerator(fake, processor.tokenizer, eos_ids=[9], largest=lambda n: max(n, 3) if n < 4 else n)
    requests = [TokenRequest([1, 2], [], max_new_tokens=2), TokenRequest([3], [], max_new_tokens=4)]
    outputs = await gen.generate_batch(requests)
    call = fake.seen[0]
    assert call["prompts"] == [[1, 2], [3], [processor.tokenizer.pad_token_id]]  # padded to 3
    assert call["images"] is None and call["n"] == 1 and call["max"] == 4
    assert fake.max_completion_length == 99  # restored
    assert [o.token_ids for o in outputs] == [[5, 6], [5, 6, 7, 8]]
    assert [o.finish_reason for o in outputs] == ["length", "length"]
    assert outputs[0].logprobs == [-0.1, -2.0]  # the sampled token's entry, wherever it ranks
    assert (
        await VLLMGenerator(fake, processor.tokenizer, eos_ids=[9], largest=lambda n: 0).generate_batch([])
        == []
    )


async def test_vllm_generator_asks_for_the_largest_limit_over_all_processes(processor: Any) -> None:
    # Two processes: this one has one turn left wanting 2 tokens, the other's wants 5. TRL sends
    # one limit for the whole call: it must be the largest, or the other's turn is cut short.
    fake = FakeVLLMGeneration()
    other = {"size": 1, "limit": 5}

    def largest(value: int) -> int:  # an all-reduce over the two processes, called alike on both
        theirs = other["size"] if largest.calls % 2 == 0 else other["limit"]  # type: ignore[attr-defined]
        largest.calls += 1  # type: ignore[attr-defined]
        return max(value, theirs)

    largest.calls = 0  # type: ignore[attr-defined]
    gen = VLLMGenerator(fake, processor.tokenizer, eos_ids=[9], largest=largest)
    await gen.generate_batch([TokenRequest([1], [], max_new_tokens=2)])
    assert fake.seen[0]["max"] == 5
    await gen.generate_batch([])  # none left here: still a call, at the other's size and limit
    assert fake.seen[1]["max"] == 5 and len(fake.seen[1]["prompts"]) == 1


async def test_teacher_serves_turns_then_hands_over(processor: Any) -> None:
    class Next:
        async def generate(self, request: TokenRequest) -> TokenOutput:
            return TokenOutput([42], "stop")

    teacher = TeacherGenerator(processor.tokenizer, ["<answer>x</answer>"], then=Next())
    first = await teacher.generate(TokenRequest([1], [], max_new_tokens=8))
    assert processor.tokenizer.decode(first.token_ids) == "<answer>x</answer>"
    assert (await teacher.generate(TokenRequest([1], [], max_new_tokens=8))).token_ids == [42]
    with pytest.raises(RuntimeError):
        await TeacherGenerator(processor.tokenizer, []).generate(TokenRequest([1], [], max_new_tokens=8))


async def test_hf_generator_samples_within_its_limit_and_never_a_placeholder(
    tiny: Path, processor: Any
) -> None:
    from transformers import AutoModelForImageTextToText

    model = AutoModelForImageTextToText.from_pretrained(tiny)
    gen = HFGenerator(model, processor, temperature=1.0)
    prompt = processor.tokenizer.encode("<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n")
    for seed in range(3):
        out = await gen.generate(TokenRequest(prompt, [], max_new_tokens=12, stop=("</answer>",), seed=seed))
        assert 1 <= len(out.token_ids) <= 12
        assert processor.image_token_id not in out.token_ids and processor.video_token_id not in out.token_ids
        if len(out.token_ids) == 12 and out.token_ids[-1] not in gen.eos_ids:
            assert out.finish_reason == "length"
    greedy = HFGenerator(model, processor, temperature=0.0)
    a = await greedy.generate(TokenRequest(prompt, [], max_new_tokens=6))
    b = await greedy.generate(TokenRequest(prompt, [], max_new_tokens=6))
    assert a == b
