"""Tiny randomly initialised Qwen2.5-VL checkpoints, built offline, for tests and CPU experiments.

:func:`build_tiny_qwen2_5_vl` writes a folder that loads like a hub checkpoint:
``AutoModelForImageTextToText.from_pretrained(dir)`` and
:func:`mmsr_serve.backends.hf_core.load_processor` (which is ``AutoProcessor`` where torchvision imports).
The defaults (128 wide, 4 layers; vision 64 wide, 2 layers) give about 1 M parameters, 4 MB on
disk, and a build of well under a second once transformers is imported.

The tokenizer is built here, not downloaded. It works like Qwen's in the ways that matter to us:
byte-level pre-tokenization (every string encodes and decodes back exactly, no unknown token),
Qwen's special tokens, and a Qwen-style chat template. Its model is a Unigram over a small list of
pieces: the 256 byte symbols, the world's consonant-vowel
:data:`~mmsr_bench.world.names.SYLLABLES` (or the ``vocab`` you pass),
segmented into the fewest pieces. The protocol tags are single tokens (unlike the real Qwen
vocabulary) so a model this small can learn the protocol quickly; they are ordinary, not special,
tokens, so decoding with ``skip_special_tokens`` keeps them.

Pitfalls respected (see the tiny-model notes): ``mrope_section`` sums to ``head_dim / 2``; bos,
eos and pad ids are set inside ``text_config``; the image processor's sides are multiples of 28.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mmsr_bench.world.names import SYLLABLES
from mmsr_serve.agent.protocol import TAGS

PROTOCOL_TAGS: tuple[str, ...] = TAGS
QWEN_SPECIAL_TOKENS: tuple[str, ...] = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|image_pad|>",
    "<|video_pad|>",
)

# Qwen's chat format: <|im_start|>role\n ... <|im_end|>\n, image parts as vision placeholders
# (the processor expands <|image_pad|> to one token per merged patch). No default system prompt:
# short prompts keep tiny-model episodes cheap.
CHAT_TEMPLATE = r"""
{%- for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' }}
  {%- if message['content'] is string %}{{ message['content'] }}
  {%- else %}
    {%- for part in message['content'] %}
      {%- if part['type'] == 'text' %}{{ part['text'] }}
      {%- elif part['type'] in ('image', 'image_url') %}{{ '<|vision_start|><|image_pad|><|vision_end|>' }}
      {%- elif part['type'] == 'video' %}{{ '<|vision_start|><|video_pad|><|vision_end|>' }}
      {%- endif %}
    {%- endfor %}
  {%- endif %}{{ '<|im_end|>\n' }}
{%- endfor %}
{%- if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}
""".strip()


def build_tokenizer(vocab: Sequence[str] | None = None) -> Any:
    """A byte-level Unigram tokenizer as a ``PreTrainedTokenizerFast`` with the chat template.

    ``vocab`` replaces :data:`SYLLABLES` as the multi-character pieces (pass
    ``SYLLABLES + (...)`` to extend it). A piece with a leading space (``" year"``) matches a word
    after a space; a piece is never matched across the pre-tokenizer's word boundaries.
    """
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    to_bytes = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    pieces = dict.fromkeys(sorted(pre_tokenizers.ByteLevel.alphabet()))
    for piece in SYLLABLES if vocab is None else vocab:
        if piece:
            pieces.update(dict.fromkeys(chunk for chunk, _ in to_bytes.pre_tokenize_str(piece)))
    # Equal scores: Viterbi picks the segmentation with the fewest pieces.
    backend = Tokenizer(models.Unigram([(piece, -1.0) for piece in pieces], unk_id=None, byte_fallback=False))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    backend.decoder = decoders.ByteLevel()
    backend.add_tokens([AddedToken(tag, normalized=False) for tag in PROTOCOL_TAGS])
    backend.add_special_tokens(
        [AddedToken(tok, special=True, normalized=False) for tok in QWEN_SPECIAL_TOKENS]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        chat_template=CHAT_TEMPLATE,
    )


def mrope_section(head_dim: int) -> list[int]:
    """Split ``head_dim / 2`` rotary frequencies over (time, height, width) as Qwen does (1:1.5:1.5)."""
    half = head_dim // 2
    time = half // 4
    height = (half - time) // 2
    return [time, height, half - time - height]


def build_tiny_qwen2_5_vl(
    out_dir: str | os.PathLike[str],
    *,
    seed: int = 0,
    vocab: Sequence[str] | None = None,
    hidden_size: int = 128,
    layers: int = 4,
    heads: int = 4,
    kv_heads: int = 2,
    vision_hidden: int = 64,
    vision_layers: int = 2,
    vision_heads: int = 4,
    min_pixels: int = 56 * 56,
    max_pixels: int = 224 * 224,
    max_position_embeddings: int = 4096,
) -> Path:
    """Build and save a random Qwen2.5-VL with its tokenizer and processor; return the folder.

    The same arguments (and ``seed``) give the same weights. Images are resized by the processor
    into ``[min_pixels, max_pixels]``; 112x112 gives 16 image tokens, 224x224 gives 64.
    """
    import torch
    from transformers import GenerationConfig, Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    from mmsr_serve.backends.qwen_processor import ImageOnlyProcessor

    if hidden_size % heads or (hidden_size // heads) % 8:
        raise ValueError("hidden_size / heads must be a multiple of 8 (mRoPE splits head_dim / 2 in three)")
    out = Path(out_dir)
    tokenizer = build_tokenizer(vocab)
    ids = {token: tokenizer.convert_tokens_to_ids(token) for token in QWEN_SPECIAL_TOKENS}
    special_ids = {
        "bos_token_id": ids["<|endoftext|>"],
        "eos_token_id": ids["<|im_end|>"],
        "pad_token_id": ids["<|endoftext|>"],
    }
    config = Qwen2_5_VLConfig(
        text_config={
            "vocab_size": len(tokenizer),
            "hidden_size": hidden_size,
            "intermediate_size": 2 * hidden_size,
            "num_hidden_layers": layers,
            "num_attention_heads": heads,
            "num_key_value_heads": kv_heads,
            "max_position_embeddings": max_position_embeddings,
            "rope_parameters": {
                "rope_type": "default",
                "rope_theta": 1_000_000.0,
                "mrope_section": mrope_section(hidden_size // heads),
            },
            **special_ids,
        },
        vision_config={
            "depth": vision_layers,
            "hidden_size": vision_hidden,
            "intermediate_size": 2 * vision_hidden,
            "num_heads": vision_heads,
            "out_hidden_size": hidden_size,
            "window_size": 112,
            "fullatt_block_indexes": [vision_layers - 1],
        },
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
        **special_ids,
    )
    torch.manual_seed(seed)
    model = Qwen2_5_VLForConditionalGeneration(config)
    model.generation_config = GenerationConfig(
        bos_token_id=special_ids["bos_token_id"],
        eos_token_id=[ids["<|im_end|>"], ids["<|endoftext|>"]],
        pad_token_id=special_ids["pad_token_id"],
    )
    model.save_pretrained(out)
    image_processor = Qwen2VLImageProcessorPil(min_pixels=min_pixels, max_pixels=max_pixels)
    ImageOnlyProcessor(image_processor, tokenizer, chat_template=CHAT_TEMPLATE).save_pretrained(out)
    return out
