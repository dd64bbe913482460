"""A Qwen2.5-VL processor for machines without torchvision (used by ``hf_core.load_processor``).

In transformers 5.x, ``Qwen2_5_VLProcessor`` has three parts: an image processor, a tokenizer and
a *video* processor. ``AutoProcessor`` loads all three, and ``Qwen2VLVideoProcessor`` exists only
with torchvision (``AutoVideoProcessor`` raises ``ImportError`` without it). The image processor
does not need torchvision: ``Qwen2VLImageProcessorPil`` gives the same grid and placeholder count
through PIL and numpy (pixel values differ from the torchvision resize by about 0.015 after
normalisation), only slower. PyPI's torchvision does not import beside the CPU build of torch our
dev machines use, so there :class:`ImageOnlyProcessor` is built from the two parts we need and
video is left out (the MMSearch-R1 protocol has no video).

Where torchvision imports (the GPU image), ``hf_core.load_processor`` uses plain
``AutoProcessor.from_pretrained`` and nothing here is involved.

Checkpoints saved through :class:`ImageOnlyProcessor` stay loadable the normal way: it writes the
upstream processor class name and the legacy ``preprocessor_config.json`` from which, where
torchvision exists, ``AutoVideoProcessor`` derives the video processor, as it does for the hub's
Qwen2.5-VL checkpoints.

This module imports transformers at import time: import it lazily.
"""

from __future__ import annotations

import os
from typing import Any

from transformers import AutoImageProcessor, AutoTokenizer, Qwen2_5_VLProcessor
from transformers.processing_utils import ProcessorMixin

UPSTREAM_CLASS = "Qwen2_5_VLProcessor"


class ImageOnlyProcessor(Qwen2_5_VLProcessor):
    """``Qwen2_5_VLProcessor`` without its video processor, for machines without torchvision.

    Text and images are processed exactly as upstream (same placeholder expansion, same
    ``mm_token_type_ids``); passing videos raises ``ValueError`` instead of being ignored.
    """

    def __init__(
        self,
        image_processor: Any = None,
        tokenizer: Any = None,
        chat_template: str | None = None,
        **kwargs: Any,
    ) -> None:
        # The sub-processor list comes from this signature, so there is no video_processor slot.
        self.image_token = getattr(tokenizer, "image_token", None) or "<|image_pad|>"
        self.video_token = getattr(tokenizer, "video_token", None) or "<|video_pad|>"
        self.image_token_id = tokenizer.convert_tokens_to_ids(self.image_token)
        self.video_token_id = tokenizer.convert_tokens_to_ids(self.video_token)
        ProcessorMixin.__init__(self, image_processor, tokenizer, chat_template=chat_template, **kwargs)

    @classmethod
    def from_checkpoint(cls, path: str | os.PathLike[str], **kwargs: Any) -> ImageOnlyProcessor:
        """Like ``from_pretrained`` (same files, same precedence), with the PIL image processor."""
        processor_dict, init_kwargs = cls.get_processor_dict(path, **kwargs)
        image_processor = AutoImageProcessor.from_pretrained(path, backend="pil", **kwargs)
        tokenizer = AutoTokenizer.from_pretrained(path, **kwargs)
        if processor_dict.get("chat_template") is None and tokenizer.chat_template is not None:
            processor_dict["chat_template"] = tokenizer.chat_template
        processor: ImageOnlyProcessor = cls.from_args_and_dict(
            [image_processor, tokenizer], processor_dict, **init_kwargs
        )
        return processor

    def validate_inputs(
        self, images: Any = None, text: Any = None, videos: Any = None, audio: Any = None, **kwargs: Any
    ) -> None:
        if videos is not None:
            raise ValueError("video input needs torchvision, which is not importable here")
        super().validate_inputs(images=images, text=text, audio=audio, **kwargs)

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = super().to_dict()
        data["processor_class"] = UPSTREAM_CLASS
        return data

    def save_pretrained(self, save_directory: Any, push_to_hub: bool = False, **kwargs: Any) -> Any:
        files: list[str] = super().save_pretrained(save_directory, push_to_hub=push_to_hub, **kwargs)
        # The tokenizer config was just stamped with this class's name: name the upstream class,
        # so every file of the checkpoint reads as a standard Qwen2.5-VL processor.
        self.tokenizer._set_processor_class(UPSTREAM_CLASS)
        self.tokenizer.save_pretrained(save_directory)
        files += list(self.image_processor.save_pretrained(save_directory))
        return files
