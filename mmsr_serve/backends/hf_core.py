"""The one transformers generation core, for serving and for training alike.

:class:`TransformersBackend <mmsr_serve.backends.hf.TransformersBackend>` (chat messages in,
streamed text out) and ``mmsr_train``'s ``HFGenerator`` (token ids in, token ids out, inside a
GRPO step) both sample through :class:`HFGeneration`, so one checkpoint generates the same way
behind ``mmsr serve`` and in a rollout: the same sampling options (greedy without a positive
temperature), the same eos set, the same Qwen2.5-VL image inputs, the same stop strings (ended on
by transformers, which keeps them) and the same finish reason. Only the encoding of the prompt
differs, because the inputs differ: serving renders messages through the chat template
(:meth:`HFGeneration.encode_chat`), training already holds the token ids
(:meth:`HFGeneration.encode_ids`).

torch and transformers are imported when something runs, never by importing this module.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from mmsr_serve.agent.protocol import cut_after_stop
from mmsr_serve.errors import BackendError

__all__ = [
    "Generated",
    "HFGeneration",
    "eos_ids_of",
    "finish_reason",
    "generate_options",
    "image_token_types",
    "load_processor",
]

Finish = Literal["stop", "length"]


def load_processor(path: str | os.PathLike[str]) -> Any:
    """The processor of a Qwen2.5-VL checkpoint folder, with or without torchvision installed.

    Where torchvision imports: ``AutoProcessor.from_pretrained(path)``, the normal way. Where it
    is not installed: the same processor without its video part
    (:class:`mmsr_serve.backends.qwen_processor.ImageOnlyProcessor`, which explains why).
    """
    if importlib.util.find_spec("torchvision") is None:
        from mmsr_serve.backends.qwen_processor import ImageOnlyProcessor

        return ImageOnlyProcessor.from_checkpoint(path)
    try:
        importlib.import_module("torchvision")
    except Exception as exc:
        # transformers itself fails beside such an install: say what to do before it does.
        raise ImportError(
            f"torchvision is installed but does not import ({exc}); transformers cannot load "
            "processors beside it. Uninstall it, or install the torchvision build made for this torch."
        ) from exc
    from transformers import AutoProcessor

    return AutoProcessor.from_pretrained(path)


def image_token_types(input_ids: Any, image_token_id: int) -> Any:
    """Qwen2.5-VL's ``mm_token_type_ids`` (1 at image placeholder tokens) for ``input_ids`` (a tensor).

    Processors of some transformers versions leave it out, and without it Qwen2.5-VL silently
    falls back to 1D positions for the image tokens. The one place this workaround is written:
    generation (here), SFT and the demo recipe call it.
    """
    return (input_ids == image_token_id).long()


def generate_options(
    *,
    temperature: float | None,
    top_p: float | None = None,
    top_k: int | None = None,
    min_p: float | None = None,
    repetition_penalty: float | None = None,
    stop: Sequence[str] = (),
    tokenizer: Any = None,
) -> dict[str, Any]:
    """The sampling arguments of ``model.generate``: greedy without a positive temperature; knobs
    left None come from the checkpoint's ``generation_config``; stop strings ended on by
    transformers (which keeps them)."""
    options: dict[str, Any] = {"do_sample": bool(temperature and temperature > 0)}
    if options["do_sample"]:
        options["temperature"] = temperature
        if top_p is not None:
            options["top_p"] = top_p
        if top_k is not None:
            options["top_k"] = max(top_k, 0)  # vLLM's -1 is transformers' 0: no top-k
        if min_p is not None:
            options["min_p"] = min_p
    if repetition_penalty is not None:  # greedy decoding honours it too
        options["repetition_penalty"] = repetition_penalty
    if stop:
        options.update(stop_strings=list(stop), tokenizer=tokenizer)
    return options


def eos_ids_of(*candidates: int | Sequence[int] | None) -> list[int]:
    """The union of the eos ids named by the generation config and the tokenizer, in order."""
    ids: list[int] = []
    for candidate in candidates:
        for i in [candidate] if isinstance(candidate, int) else candidate or ():
            if i not in ids:
                ids.append(i)
    if not ids:
        raise BackendError("the checkpoint names no eos token (generation_config or tokenizer)")
    return ids


def finish_reason(
    ids: Sequence[int], text: str, stop: Sequence[str], max_tokens: int, eos_ids: Sequence[int]
) -> Finish:
    """``stop`` when an eos token or a stop string ended the turn, ``length`` when ``max_tokens``
    tokens ran out first (vLLM's rule; the eos token counts as generated)."""
    if (ids and ids[-1] in eos_ids) or (stop and cut_after_stop(text, stop)[1]):
        return "stop"
    return "length" if len(ids) >= max_tokens else "stop"


@dataclass(frozen=True)
class Generated:
    prompt_tokens: int
    token_ids: list[int]
    """The sampled ids, ending at (and including) the first eos token."""


class HFGeneration:
    """Sample from a loaded Qwen2.5-VL-family ``model`` with its ``processor``.

    Blocking: callers run :meth:`generate` in a worker thread. ``seed`` seeds torch's global
    generator just before the call, so it is reproducible while one generation runs at a time.
    """

    def __init__(self, model: Any, processor: Any) -> None:
        self.model = model
        self.processor = processor
        self.tokenizer = processor.tokenizer
        self.eos_ids = eos_ids_of(model.generation_config.eos_token_id, self.tokenizer.eos_token_id)
        pad = model.generation_config.pad_token_id
        if pad is None:
            pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else self.eos_ids[0]
        self.pad_id: int = pad
        self.image_token_id: int = model.config.image_token_id

    def encode_chat(self, conversation: list[dict[str, Any]], images: Sequence[Any]) -> dict[str, Any]:
        """Model inputs for a chat (``conversation`` in the processor's chat-template form, with an
        ``{"type": "image"}`` part where each of ``images`` goes), ready to answer."""
        prompt = self.processor.apply_chat_template(conversation, add_generation_prompt=True, tokenize=False)
        rgb = [image.convert("RGB") for image in images]
        inputs = self.processor(text=[prompt], images=rgb or None, return_tensors="pt")
        if "mm_token_type_ids" not in inputs and rgb:
            inputs["mm_token_type_ids"] = image_token_types(inputs["input_ids"], self.image_token_id)
        inputs = inputs.to(self.model.device)
        if "pixel_values" in inputs:
            inputs["pixel_values"] = inputs["pixel_values"].to(self.model.dtype)
        return dict(inputs)

    def encode_ids(self, token_ids: Sequence[int], images: Sequence[Any]) -> dict[str, Any]:
        """Model inputs for a prompt already tokenised (its image placeholders expanded)."""
        import torch

        device = self.model.device
        ids = torch.tensor([list(token_ids)], device=device)
        inputs: dict[str, Any] = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
        if images:
            pixels = self.processor.image_processor(images=list(images), return_tensors="pt")
            inputs["pixel_values"] = pixels["pixel_values"].to(device=device, dtype=self.model.dtype)
            inputs["image_grid_thw"] = pixels["image_grid_thw"].to(device)
            inputs["mm_token_type_ids"] = image_token_types(ids, self.image_token_id)
        return inputs

    def generate(
        self,
        inputs: dict[str, Any],
        *,
        max_new_tokens: int,
        temperature: float | None,
        top_p: float | None = None,
        top_k: int | None = None,
        min_p: float | None = None,
        repetition_penalty: float | None = None,
        stop: Sequence[str] = (),
        seed: int | None = None,
        suppress_tokens: Sequence[int] = (),
        streamer: Any = None,
        stopping_criteria: Sequence[Any] = (),
    ) -> Generated:
        import torch

        options = generate_options(
            temperature=temperature,
            top_p=top_p,
            top_k=top_k,
            min_p=min_p,
            repetition_penalty=repetition_penalty,
            stop=stop,
            tokenizer=self.tokenizer,
        )
        if seed is not None:
            torch.manual_seed(seed)
        prompt_tokens = int(inputs["input_ids"].shape[1])
        # no_grad, not inference_mode: in a training process, tensors that generation caches on
        # the model must stay usable by the next backward pass.
        with torch.no_grad():
            output = self.model.generate(
                **inputs,
                **options,
                max_new_tokens=max_new_tokens,
                eos_token_id=self.eos_ids,
                pad_token_id=self.pad_id,
                suppress_tokens=list(suppress_tokens) or None,
                streamer=streamer,
                stopping_criteria=list(stopping_criteria) or None,
            )
        new = [int(i) for i in output[0, prompt_tokens:].tolist()]
        for i, token in enumerate(new):
            if token in self.eos_ids:
                new = new[: i + 1]
                break
        return Generated(prompt_tokens, new)

    def finish(self, generated: Generated, text: str, stop: Sequence[str], max_tokens: int) -> Finish:
        return finish_reason(generated.token_ids, text, stop, max_tokens, self.eos_ids)
