"""The tiny offline Qwen2.5-VL checkpoint: loads like a hub checkpoint, small, with a usable tokenizer."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

from PIL import Image

from mmsr_train.tiny_model import (
    PROTOCOL_TAGS,
    QWEN_SPECIAL_TOKENS,
    SYLLABLES,
    build_tiny_qwen2_5_vl,
    build_tokenizer,
    mrope_section,
)


def test_loads_through_the_auto_classes_and_is_small(tiny: Path, processor: Any) -> None:
    from transformers import AutoModelForImageTextToText

    model = AutoModelForImageTextToText.from_pretrained(tiny)
    assert type(model).__name__ == "Qwen2_5_VLForConditionalGeneration"
    assert sum(p.numel() for p in model.parameters()) < 1_500_000
    assert sum(f.stat().st_size for f in tiny.iterdir()) < 8 * 1024 * 1024
    tokenizer = processor.tokenizer
    text = model.config.text_config
    assert text.vocab_size == len(tokenizer)
    assert sum(text.rope_parameters["mrope_section"]) == text.hidden_size // text.num_attention_heads // 2
    assert text.eos_token_id == tokenizer.convert_tokens_to_ids("<|im_end|>") == tokenizer.eos_token_id
    assert text.pad_token_id == text.bos_token_id == tokenizer.convert_tokens_to_ids("<|endoftext|>")
    assert model.config.image_token_id == tokenizer.convert_tokens_to_ids("<|image_pad|>")
    assert model.generation_config.eos_token_id == [text.eos_token_id, text.pad_token_id]


def test_processor_is_upstreams_wherever_torchvision_imports(processor: Any) -> None:
    from transformers import Qwen2_5_VLProcessor

    from mmsr_serve.backends.qwen_processor import ImageOnlyProcessor

    if importlib.util.find_spec("torchvision") is None:
        assert type(processor) is ImageOnlyProcessor and not hasattr(processor, "video_processor")
    else:
        assert type(processor) is Qwen2_5_VLProcessor and processor.video_processor is not None


def test_files_name_only_upstream_classes(tiny: Path) -> None:
    processor_config = json.loads((tiny / "processor_config.json").read_text())
    assert processor_config["processor_class"] == "Qwen2_5_VLProcessor"
    legacy = json.loads((tiny / "preprocessor_config.json").read_text())
    assert legacy["image_processor_type"] == "Qwen2VLImageProcessor"
    assert (
        json.loads((tiny / "tokenizer_config.json").read_text())["processor_class"] == "Qwen2_5_VLProcessor"
    )
    assert "mmsr" not in "".join(p.read_text() for p in tiny.glob("*.json*"))


def test_same_seed_same_weights(tmp_path: Path) -> None:
    from safetensors.torch import load_file

    first = load_file(build_tiny_qwen2_5_vl(tmp_path / "a", seed=7) / "model.safetensors")
    again = load_file(build_tiny_qwen2_5_vl(tmp_path / "b", seed=7) / "model.safetensors")
    other = load_file(build_tiny_qwen2_5_vl(tmp_path / "c", seed=8) / "model.safetensors")
    assert all(first[k].equal(again[k]) for k in first)
    assert not all(first[k].equal(other[k]) for k in first)


def test_mrope_section_matches_qwen_proportions() -> None:
    assert mrope_section(32) == [4, 6, 6]
    assert mrope_section(64) == [8, 12, 12]
    assert mrope_section(128) == [16, 24, 24]  # Qwen2.5-VL-7B's


def test_tokenizer_round_trips_tags_ascii_and_anything_else() -> None:
    tokenizer = build_tokenizer()
    for token in PROTOCOL_TAGS + QWEN_SPECIAL_TOKENS:
        assert tokenizer.convert_ids_to_tokens(tokenizer.encode(token)) == [token]
    turn = "<reason>Kalomi was designed in 1987.</reason><text_search>Kalomi designer</text_search>"
    ids = tokenizer.encode(turn)
    assert tokenizer.decode(ids) == turn and len(ids) < len(turn) / 1.5
    assert tokenizer.convert_ids_to_tokens(tokenizer.encode("Kalomi")) == ["Ka", "lo", "mi"]
    for text in ["naïve café, 東京 🙂", "tabs\tand\nnewlines  ", "~`{}|\\^"]:
        assert tokenizer.decode(tokenizer.encode(text)) == text
    assert tokenizer.unk_token_id is None


def test_tokenizer_vocab_replaces_the_syllables() -> None:
    tokenizer = build_tokenizer(["year", " designer", "ka"])
    assert tokenizer.convert_ids_to_tokens(tokenizer.encode("year designer")) == ["year", "Ġdesigner"]
    assert "Ka" not in tokenizer.get_vocab() and len(tokenizer) < len(build_tokenizer())
    assert len(SYLLABLES) == len(set(SYLLABLES)) == 190


def test_chat_template_renders_parts_and_the_generation_prompt(processor: Any) -> None:
    conversation = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Who made it?"}]},
    ]
    prompt = processor.apply_chat_template(conversation, add_generation_prompt=True, tokenize=False)
    assert prompt == (
        "<|im_start|>system\nBe brief.<|im_end|>\n"
        "<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>Who made it?<|im_end|>\n"
        "<|im_start|>assistant\n"
    )


def test_processor_expands_images_within_the_pixel_budget(processor: Any) -> None:
    prompt = "<|vision_start|><|image_pad|><|vision_end|>" * 2
    images = [Image.new("RGB", (112, 112), "red"), Image.new("RGB", (640, 480), "blue")]
    inputs = processor(text=[prompt], images=images, return_tensors="pt")
    # 640x480 is scaled into 224*224 pixels with sides a multiple of 28: 252x168 = 18x12 patches.
    assert inputs["image_grid_thw"].tolist() == [[1, 8, 8], [1, 12, 18]]
    pad_id = processor.tokenizer.convert_tokens_to_ids("<|image_pad|>")
    assert int((inputs["input_ids"] == pad_id).sum()) == 16 + 12 * 18 // 4
    assert int(inputs["mm_token_type_ids"].sum()) == 16 + 12 * 18 // 4


def test_forward_pass_with_an_image(tiny: Path, processor: Any) -> None:
    import torch
    from transformers import AutoModelForImageTextToText

    model = AutoModelForImageTextToText.from_pretrained(tiny)
    conversation = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Who?"}]}]
    prompt = processor.apply_chat_template(conversation, add_generation_prompt=True, tokenize=False)
    inputs = processor(
        text=[prompt + "<answer>Ka</answer>"], images=[Image.new("RGB", (100, 80))], return_tensors="pt"
    )
    with torch.no_grad():
        out = model(**inputs, labels=inputs["input_ids"])
    assert torch.isfinite(out.loss) and out.logits.shape[-1] == len(processor.tokenizer)
