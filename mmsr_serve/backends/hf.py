"""TransformersBackend: in-process generation with a Qwen2.5-VL-family checkpoint.

For small checkpoints on CPU or one GPU (tests, demos, the tiny models of ``mmsr_train``); the
production path is a vLLM server behind :class:`~mmsr_serve.backends.openai_http.OpenAIBackend`.
torch and transformers are imported when a backend is created, never by importing this module.

Decisions:

- Generation runs in a worker thread (one pool of ``max_concurrency`` threads per backend, and an
  asyncio semaphore in front so waiting requests never hold a thread). Text reaches the event
  loop through transformers' ``AsyncTextIteratorStreamer``.
- Generation itself is :class:`~mmsr_serve.backends.hf_core.HFGeneration`, the core that
  training's rollouts sample through too; this class adds threads, streaming and cancellation.
- Sampling: ``temperature`` None or 0 means greedy decoding, so an unparameterised request is
  deterministic (vLLM would sample with the checkpoint's defaults instead). Otherwise it samples
  with the request's temperature; knobs the request leaves unset (``top_p``, ``top_k``,
  repetition penalty) come from the checkpoint's ``generation_config``, as vLLM does. ``seed``
  seeds torch's global generator before the call: reproducible while one generation runs at a
  time (the default ``max_concurrency=1``).
- Stop strings go to transformers (``stop_strings`` + ``tokenizer``), which ends generation on
  the token that completes one. That token may run past the stop string; the text is cut just
  after the stop string, which is kept (the package convention), and the streamed deltas are cut
  the same way, so they always add up to the final text.
- ``finish_reason`` is "length" only when ``max_tokens`` tokens were generated and neither an
  eos token nor a stop string ended the turn. Token counts are the lengths of the processor's
  ``input_ids`` and of the generated ids (the eos token included, as vLLM counts).
- A consumer that stops iterating (client disconnect) sets a flag that a stopping criterion
  checks after every token; the generator then waits for the worker to finish that step, so no
  thread outlives its request.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import AsyncIterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from mmsr_serve.agent.protocol import cut_after_stop
from mmsr_serve.backends.base import (
    Completion,
    Delta,
    FinishReason,
    GenerateRequest,
    ImagePart,
    Message,
    ModelBackend,
)
from mmsr_serve.backends.hf_core import Generated, HFGeneration, load_processor
from mmsr_serve.errors import BackendError, InvalidInputError


class _StopFlag:
    """A stopping criterion that ends generation once ``event`` is set (checked after each token)."""

    def __init__(self, event: threading.Event) -> None:
        self.event = event

    def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
        return input_ids.new_full((input_ids.shape[0],), self.event.is_set(), dtype=bool)


class TransformersBackend(ModelBackend):
    """Generate with a local checkpoint folder.

    ``device``: "cpu", "cuda", "cuda:N" or "auto" (CUDA when available). ``dtype``: a torch dtype
    name or "auto" (the checkpoint's); None picks bfloat16 on CUDA (float16 on GPUs without it)
    and float32 on CPU, where half-precision matrix products are slow. Loading blocks: build the
    backend before serving, not inside a request.
    """

    keeps_stop_strings = True  # transformers keeps the stop string it stopped on

    def __init__(
        self,
        model_path: str | os.PathLike[str],
        *,
        device: str = "auto",
        dtype: str | None = None,
        max_concurrency: int = 1,
        model: str | None = None,
    ) -> None:
        import torch
        from transformers import AutoModelForImageTextToText

        if max_concurrency < 1:
            raise ValueError("max_concurrency must be at least 1")
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        if dtype is None and device.startswith("cuda"):
            dtype = "bfloat16" if torch.cuda.is_bf16_supported() else "float16"
        self.model = model or Path(model_path).name
        self.processor = load_processor(model_path)
        self.tokenizer = self.processor.tokenizer
        torch_dtype = dtype if dtype == "auto" else getattr(torch, dtype or "float32")
        hf_model: Any = AutoModelForImageTextToText.from_pretrained(model_path, dtype=torch_dtype)
        self.hf_model: Any = hf_model.to(device).eval()
        self.core = HFGeneration(self.hf_model, self.processor)
        self._semaphore = asyncio.Semaphore(max_concurrency)
        self._executor = ThreadPoolExecutor(max_concurrency, thread_name_prefix="mmsr-hf")
        self._closed = False

    async def stream(self, request: GenerateRequest) -> AsyncIterator[Delta | Completion]:
        from transformers import AsyncTextIteratorStreamer

        if request.max_tokens < 1:
            raise InvalidInputError("max_tokens must be at least 1", param="max_tokens")
        if self._closed:
            raise BackendError(f"{self.model}: the backend is closed")
        async with self._semaphore:
            streamer = AsyncTextIteratorStreamer(self.tokenizer, skip_prompt=True, skip_special_tokens=True)
            cancel = threading.Event()
            work = asyncio.get_running_loop().run_in_executor(
                self._executor, self._generate_blocking, request, streamer, cancel
            )
            text, stopped = "", False
            try:
                async for chunk in streamer:
                    if stopped:
                        continue
                    chunk, stopped = _cut_at_stop(text, chunk, request.stop)
                    if stopped:
                        cancel.set()
                    if chunk:
                        text += chunk
                        yield Delta(chunk)
                generated = await work
            except BaseException:
                cancel.set()
                await asyncio.gather(work, return_exceptions=True)
                raise
        finish: FinishReason = self.core.finish(generated, text, request.stop, request.max_tokens)
        yield Completion(
            text, finish, prompt_tokens=generated.prompt_tokens, completion_tokens=len(generated.token_ids)
        )

    def _generate_blocking(
        self, request: GenerateRequest, streamer: Any, cancel: threading.Event
    ) -> Generated:
        """Runs in a worker thread. Always ends the streamer, so the consumer never waits forever."""
        finished = False
        try:
            generated = self.core.generate(
                self._encode(request.messages),
                max_new_tokens=request.max_tokens,
                temperature=request.temperature,
                top_p=request.top_p,
                top_k=request.top_k,
                min_p=request.min_p,
                repetition_penalty=request.repetition_penalty,
                stop=request.stop,
                seed=request.seed,
                streamer=streamer,
                stopping_criteria=[_StopFlag(cancel)],
            )
            finished = True
        except Exception as exc:
            raise BackendError(f"{self.model}: generation failed: {exc}") from exc
        finally:
            if not finished:
                streamer.end()
        return generated

    def _encode(self, messages: Sequence[Message]) -> dict[str, Any]:
        conversation = [
            {
                "role": message.role,
                "content": [
                    {"type": "image"} if isinstance(part, ImagePart) else {"type": "text", "text": part.text}
                    for part in message.content
                ],
            }
            for message in messages
        ]
        images = [image for message in messages for image in message.images]
        return self.core.encode_chat(conversation, images)

    async def aclose(self) -> None:
        """Refuse new requests and wait for the running generations' threads to end."""
        self._closed = True
        await asyncio.to_thread(self._executor.shutdown, wait=True)


def _cut_at_stop(text: str, chunk: str, stop: Sequence[str]) -> tuple[str, bool]:
    """Return the part of ``chunk`` to emit after ``text``, and whether a stop string ended it.

    The turn ends right after the earliest-ending stop string, which is kept.
    """
    if not stop:
        return chunk, False
    start = max(0, len(text) - max(len(s) for s in stop) + 1)
    cut, stopped = cut_after_stop(text + chunk, stop, start)
    return cut[len(text) :], stopped
