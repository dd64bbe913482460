"""TransformersBackend on CPU with the tiny offline Qwen2.5-VL.

The random model's text is meaningless, so most tests *script* it: :func:`scripted` adds a forward
hook on ``lm_head`` that makes the n-th generated token ``tokens[n]`` (the last one repeats).
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from mmsr_serve.backends.base import Completion, Delta, GenerateRequest, Message
from mmsr_serve.backends.hf import TransformersBackend
from mmsr_serve.errors import BackendError, InvalidInputError


@pytest.fixture
def backend(tiny: Path) -> TransformersBackend:
    return TransformersBackend(tiny, device="cpu")


def ask(**kwargs: Any) -> GenerateRequest:
    image = Image.new("RGB", (112, 112), (30, 160, 90))
    messages = [Message.of("system", "Be brief."), Message.of("user", image, "Who designed this?")]
    return GenerateRequest(messages, **kwargs)


@contextmanager
def scripted(backend: TransformersBackend, tokens: Sequence[str]) -> Iterator[list[int]]:
    """Force the generated tokens; yields a one-item list counting the forward steps taken."""
    ids = backend.tokenizer.convert_tokens_to_ids(list(tokens))
    steps = [0]

    def hook(module: Any, args: Any, logits: Any) -> Any:
        if steps[0] < 0:
            raise RuntimeError("scripted failure")
        logits = logits.clone()
        logits[..., ids[min(steps[0], len(ids) - 1)]] += 1e4
        steps[0] += 1
        return logits

    handle = backend.hf_model.lm_head.register_forward_hook(hook)
    try:
        yield steps
    finally:
        handle.remove()


async def collect(backend: TransformersBackend, request: GenerateRequest) -> tuple[list[str], Completion]:
    deltas: list[str] = []
    async for item in backend.stream(request):
        if isinstance(item, Delta):
            deltas.append(item.text)
        else:
            return deltas, item
    raise AssertionError("no Completion")


def test_module_imports_without_torch() -> None:
    code = (
        "import sys; sys.modules['torch'] = sys.modules['transformers'] = None\n"
        "import mmsr_serve.backends.hf, mmsr_serve.backends\n"
        "assert mmsr_serve.backends.TransformersBackend is mmsr_serve.backends.hf.TransformersBackend"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def reference_inputs(processor: Any, request: GenerateRequest) -> Any:
    """The processor's inputs for ``ask()``'s conversation, built independently of the backend."""
    conversation = [
        {"role": "system", "content": [{"type": "text", "text": "Be brief."}]},
        {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Who designed this?"}]},
    ]
    prompt = processor.apply_chat_template(conversation, add_generation_prompt=True, tokenize=False)
    return processor(text=[prompt], images=request.messages[1].images, return_tensors="pt")


def test_broken_torchvision_is_reported_clearly(tmp_path: Path) -> None:
    (tmp_path / "torchvision").mkdir()
    (tmp_path / "torchvision" / "__init__.py").write_text("raise RuntimeError('torchvision::nms is missing')")
    code = (
        "from mmsr_serve.backends.hf_core import load_processor\n"
        "try:\n    load_processor('unused')\nexcept ImportError as exc:\n    print(exc)"
    )
    path = os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")])
    run = subprocess.run(
        [sys.executable, "-c", code], env={**os.environ, "PYTHONPATH": path}, capture_output=True, text=True
    )
    assert "torchvision is installed but does not import (torchvision::nms is missing)" in run.stdout


async def test_matches_plain_greedy_generate_and_counts_tokens_exactly(
    backend: TransformersBackend, tiny: Path
) -> None:
    import torch

    from mmsr_serve.backends.hf_core import load_processor

    request = ask(max_tokens=24)
    deltas, done = await collect(backend, request)
    inputs = reference_inputs(load_processor(tiny), request)
    assert int(inputs["mm_token_type_ids"].sum()) == 16  # 112x112 pixels: 8x8 patches, merged 2x2
    eos = backend.hf_model.generation_config.eos_token_id
    with torch.inference_mode():
        out = backend.hf_model.generate(**inputs, max_new_tokens=24, do_sample=False, eos_token_id=eos)
    new_ids = out[0, inputs["input_ids"].shape[1] :]
    assert done.prompt_tokens == inputs["input_ids"].shape[1]
    assert done.completion_tokens == len(new_ids)
    assert done.text == backend.tokenizer.decode(new_ids, skip_special_tokens=True) == "".join(deltas)
    assert (await backend.generate(request)).text == done.text  # greedy: the same again


async def test_eos_first_gives_an_empty_stop(backend: TransformersBackend) -> None:
    with scripted(backend, ["<|im_end|>"]):
        done = await backend.generate(ask())
    assert (done.text, done.finish_reason, done.completion_tokens) == ("", "stop", 1)


async def test_max_tokens_gives_length(backend: TransformersBackend) -> None:
    with scripted(backend, ["Ka", "lo", "Ġ"]):
        deltas, done = await collect(backend, ask(max_tokens=7))
    assert (done.text, done.finish_reason, done.completion_tokens) == ("Kalo" + " " * 5, "length", 7)
    assert "".join(deltas) == done.text


async def test_eos_on_the_last_allowed_token_is_stop(backend: TransformersBackend) -> None:
    with scripted(backend, ["Ka", "<|im_end|>"]):
        done = await backend.generate(ask(max_tokens=2))
    assert (done.text, done.finish_reason, done.completion_tokens) == ("Ka", "stop", 2)


async def test_stop_string_ends_the_turn_and_is_kept(backend: TransformersBackend) -> None:
    turn = ["<reason>", "Ka", "</reason>", "<answer>", "Po", "</answer>", "Ġ", "more"]
    with scripted(backend, turn) as steps:
        deltas, done = await collect(backend, ask(stop=("</search>", "</answer>")))
    assert (done.text, done.finish_reason, done.completion_tokens) == (
        "<reason>Ka</reason><answer>Po</answer>",
        "stop",
        6,
    )
    assert "".join(deltas) == done.text and steps[0] == 6


async def test_stop_string_inside_a_token_cuts_the_text_there(backend: TransformersBackend) -> None:
    with scripted(backend, ["Ka", "lo", "mi", "Ġ"]) as steps:
        deltas, done = await collect(backend, ask(stop=("alo",), max_tokens=10))
    assert (done.text, done.finish_reason, done.completion_tokens) == ("Kalo", "stop", 2)
    with scripted(backend, ["Ka", "lo", "mi", "Ġ"]) as steps:
        deltas, done = await collect(backend, ask(stop=("al",), max_tokens=10))
    assert (done.text, done.finish_reason, done.completion_tokens) == ("Kal", "stop", 2)
    assert "".join(deltas) == "Kal" and steps[0] == 2


async def test_seeded_sampling_is_reproducible(backend: TransformersBackend) -> None:
    first = await backend.generate(ask(max_tokens=16, temperature=1.0, top_p=0.95, seed=5))
    again = await backend.generate(ask(max_tokens=16, temperature=1.0, top_p=0.95, seed=5))
    other = await backend.generate(ask(max_tokens=16, temperature=1.0, top_p=0.95, seed=6))
    assert first.text == again.text != other.text


async def test_generation_leaves_the_event_loop_free(tiny: Path) -> None:
    backend = TransformersBackend(tiny, device="cpu", max_concurrency=1)
    ticks: list[float] = []
    finished = asyncio.Event()

    async def tick() -> None:
        while not finished.is_set():
            await asyncio.sleep(0.005)
            ticks.append(time.perf_counter())

    async def timed(request: GenerateRequest) -> tuple[float, float]:
        first_delta = None
        async for _ in backend.stream(request):
            first_delta = first_delta or time.perf_counter()
        return first_delta or 0.0, time.perf_counter()

    ticker = asyncio.create_task(tick())
    with scripted(backend, ["Ka", "Ġ"]):
        (first_a, done_a), (first_b, done_b) = await asyncio.gather(
            timed(ask(max_tokens=60)), timed(ask(max_tokens=60))
        )
    finished.set()
    await ticker
    # The loop kept running while each request streamed (a generation that held the loop would
    # deliver all its deltas at once, with no tick in between); no wall-clock threshold.
    for first, done in ((first_a, done_a), (first_b, done_b)):
        assert sum(first < t < done for t in ticks) >= 2
    assert first_b >= done_a or first_a >= done_b  # max_concurrency=1: one after the other
    await backend.aclose()


async def test_closing_the_stream_stops_the_generation(backend: TransformersBackend) -> None:
    with scripted(backend, ["Ka"]) as steps:
        stream = backend.stream(ask(max_tokens=5000))
        assert isinstance(await anext(stream), Delta)
        started = time.perf_counter()
        await stream.aclose()
        assert time.perf_counter() - started < 1.0
        stopped_at = steps[0]
        await asyncio.sleep(0.1)
        assert steps[0] == stopped_at < 100  # the worker is done, not generating in the background
    done = await backend.generate(ask(max_tokens=2))  # and the slot was released
    assert done.completion_tokens is not None and done.completion_tokens <= 2


async def test_a_failing_generation_raises_backend_error_and_frees_the_slot(
    backend: TransformersBackend,
) -> None:
    with scripted(backend, ["Ka"]) as steps:
        steps[0] = -1
        with pytest.raises(BackendError, match="scripted failure"):
            await asyncio.wait_for(backend.generate(ask()), timeout=10)
    assert (await asyncio.wait_for(backend.generate(ask(max_tokens=2)), timeout=10)).completion_tokens


async def test_max_tokens_below_one_is_refused(backend: TransformersBackend) -> None:
    with pytest.raises(InvalidInputError, match="max_tokens"):
        await backend.generate(ask(max_tokens=0))


async def test_closed_backend_refuses_requests(backend: TransformersBackend) -> None:
    await backend.aclose()
    with pytest.raises(BackendError, match="closed"):
        await backend.generate(ask())


def test_vllms_sampling_extras_map_onto_generate() -> None:
    from mmsr_serve.backends.hf_core import generate_options

    sampled = generate_options(temperature=0.7, top_p=0.9, top_k=-1, min_p=0.05, repetition_penalty=1.1)
    assert sampled == {
        "do_sample": True,
        "temperature": 0.7,
        "top_p": 0.9,
        "top_k": 0,  # vLLM's -1: no top-k
        "min_p": 0.05,
        "repetition_penalty": 1.1,
    }
    greedy = generate_options(temperature=0, top_k=5, min_p=0.05, repetition_penalty=1.2)
    assert greedy == {"do_sample": False, "repetition_penalty": 1.2}  # the filters only apply to sampling
