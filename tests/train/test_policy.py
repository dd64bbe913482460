"""The token-level policy backend: the serving loop's conversation, kept as token ids."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from mmsr_serve.agent.loop import Tools
from mmsr_serve.search.local import LocalIndex
from mmsr_train.generators import TeacherGenerator
from mmsr_train.policy import TemplateError, TokenOutput, TokenRequest, chat_conversation
from mmsr_train.rollout import TRAINING_LIMITS, RolloutEnv, RolloutTask, run_rollout, run_sync


class ScriptedIds:
    """A generator returning given id lists, recording every request."""

    def __init__(self, *turns: list[int]) -> None:
        self.turns = list(turns)
        self.requests: list[TokenRequest] = []

    async def generate(self, request: TokenRequest) -> TokenOutput:
        self.requests.append(request)
        ids = self.turns.pop(0)[: request.max_new_tokens]
        return TokenOutput(ids, "stop" if len(ids) < request.max_new_tokens else "length")


def rollout(task: RolloutTask, generator: Any, processor: Any, env: RolloutEnv) -> Any:
    return run_sync(lambda: run_rollout(task, generator, processor, env))


def collapse_pads(text: str) -> str:
    return re.sub(r"(<\|image_pad\|>)+", "<|image_pad|>", text)


def test_trace_is_prompt_then_sampled_and_environment_tokens(
    processor: Any, index: LocalIndex, question_image: Image.Image, scripted_turns: list[str]
) -> None:
    tok = processor.tokenizer
    env = RolloutEnv(Tools(index, index))
    run = rollout(
        RolloutTask("Who designed this?", question_image),
        TeacherGenerator(tok, scripted_turns),
        processor,
        env,
    )
    assert run.result.finish_reason == "stop" and run.turns == scripted_turns
    assert run.result.search_calls == {"image": 1, "text": 1}
    trace = run.trace
    # env_mask marks exactly the sampled tokens, and they are the generator's ids, in order
    assert len(trace.env_mask) == len(trace.completion_ids)
    sampled = [t for t, m in zip(trace.completion_ids, trace.env_mask, strict=True) if m]
    assert sampled == [t for turn in trace.sampled for t in turn]
    assert trace.sampled == [tok.encode(t, add_special_tokens=False) for t in scripted_turns]
    # the whole sequence is the chat-template render of the conversation the loop built
    render = processor.apply_chat_template(chat_conversation(run.result.messages), tokenize=False)
    assert collapse_pads(tok.decode(trace.token_ids)) == render.removesuffix("\n")
    assert trace.token_ids[-1] == tok.eos_token_id and trace.env_mask[-1] == 0
    # the images are the user's, then the thumbnails, and their placeholders match their features
    hits = run.result.searches[0].hits
    assert len(hits) >= 1 and len(trace.images) == 1 + len(hits)
    grid = processor.image_processor(images=trace.images, return_tensors="pt")["image_grid_thw"]
    pad = processor.image_token_id
    assert trace.token_ids.count(pad) == int(grid.prod(dim=-1).sum()) // 4
    assert pad not in [t for t, m in zip(trace.completion_ids, trace.env_mask, strict=True) if m]


def test_sampled_ids_are_never_retokenised(processor: Any, index: LocalIndex) -> None:
    tok = processor.tokenizer

    def chars(text: str) -> list[int]:  # one token per character: not how the tokenizer would split it
        return [i for c in text for i in tok.encode(c, add_special_tokens=False)]

    ids = tok.encode("<reason>", add_special_tokens=False) + chars("Kalo")
    ids += tok.encode("</reason><answer>", add_special_tokens=False) + chars("Kalo")
    ids += tok.encode("</answer>", add_special_tokens=False)
    text = "<reason>Kalo</reason><answer>Kalo</answer>"
    assert tok.decode(ids) == text and tok.encode(text, add_special_tokens=False) != ids
    run = rollout(RolloutTask("Name?"), ScriptedIds(ids), processor, RolloutEnv(Tools(index, index)))
    assert run.result.answer == "Kalo"
    assert run.trace.completion_ids[: len(ids)] == ids and run.trace.env_mask == [1] * len(ids) + [0]


def test_per_turn_limit_and_total_budget(processor: Any, index: LocalIndex) -> None:
    tok = processor.tokenizer
    search = tok.encode("<reason>a</reason><text_search>glass heron</text_search>", add_special_tokens=False)
    long_turn = tok.encode("<reason>" + "ba" * 40, add_special_tokens=False)
    gen = ScriptedIds(search, long_turn)
    limits = TRAINING_LIMITS.with_overrides(max_new_tokens=20, max_total_tokens=10_000)
    run = rollout(RolloutTask("Who?"), gen, processor, RolloutEnv(Tools(index, index), limits))
    assert [r.max_new_tokens for r in gen.requests] == [20, 20]
    assert run.result.finish_reason == "length" and len(run.trace.sampled[1]) == 20
    # a budget that the search results overflow: they are not appended, the turn ends with length
    env_tokens = len(run.trace.completion_ids) - len(search) - 20
    budget = len(search) + env_tokens - 5
    gen = ScriptedIds(search, long_turn)
    limits = TRAINING_LIMITS.with_overrides(max_new_tokens=20, max_total_tokens=budget)
    run = rollout(RolloutTask("Who?"), gen, processor, RolloutEnv(Tools(index, index), limits))
    assert run.result.finish_reason == "length" and len(gen.requests) == 1
    assert run.trace.completion_ids == search and len(run.trace.completion_ids) <= budget
    # a budget that leaves the second turn less than its per-turn limit
    budget = len(search) + env_tokens + 7
    gen = ScriptedIds(search, long_turn)
    limits = TRAINING_LIMITS.with_overrides(max_new_tokens=20, max_total_tokens=budget)
    run = rollout(RolloutTask("Who?"), gen, processor, RolloutEnv(Tools(index, index), limits))
    assert gen.requests[1].max_new_tokens == 7 and len(run.trace.completion_ids) == budget


def test_a_sampled_image_placeholder_ends_the_turn(processor: Any, index: LocalIndex) -> None:
    tok = processor.tokenizer
    start = tok.encode("<reason>hm", add_special_tokens=False)
    gen = ScriptedIds([*start, processor.image_token_id, *tok.encode("</reason>", add_special_tokens=False)])
    run = rollout(RolloutTask("Who?"), gen, processor, RolloutEnv(Tools(index, index)))
    assert run.trace.completion_ids == start and run.result.finish_reason == "length"


class _ForgetfulTemplate:
    """A processor whose template drops the reasoning of earlier assistant turns (as some do)."""

    def __init__(self, processor: Any) -> None:
        self._processor = processor

    def __getattr__(self, name: str) -> Any:
        return getattr(self._processor, name)

    def apply_chat_template(self, conversation: list[dict[str, Any]], **kwargs: Any) -> str:
        stripped = [
            {
                **m,
                "content": [
                    {**p, "text": re.sub(r"<reason>.*?</reason>", "", p.get("text", ""))}
                    for p in m["content"]
                ],
            }
            if m["role"] == "assistant"
            else m
            for m in conversation
        ]
        text: str = self._processor.apply_chat_template(stripped, **kwargs)
        return text

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._processor(*args, **kwargs)


def test_a_template_that_rewrites_earlier_turns_is_refused(processor: Any, index: LocalIndex) -> None:
    turns = [
        "<reason>a</reason><text_search>glass heron</text_search>",
        "<reason>b</reason><answer>x</answer>",
    ]
    gen = TeacherGenerator(processor.tokenizer, turns)
    with pytest.raises(TemplateError, match="does not extend"):
        rollout(RolloutTask("Who?"), gen, _ForgetfulTemplate(processor), RolloutEnv(Tools(index, index)))


def test_text_only_question_has_no_images(processor: Any, index: LocalIndex, tiny: Path) -> None:
    gen = TeacherGenerator(processor.tokenizer, ["<reason>known</reason><answer>1851</answer>"])
    run = rollout(RolloutTask("When?"), gen, processor, RolloutEnv(Tools(index, index)))
    assert run.trace.images == [] and run.result.answer == "1851"
    assert processor.image_token_id not in run.trace.token_ids
