"""SFT warm start: trajectories replayed through the loop, loss on the model turns only."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from mmsr_bench.data import DataError
from mmsr_serve.agent.loop import Tools
from mmsr_serve.config import AgentConfig
from mmsr_serve.search.local import LocalIndex
from mmsr_train.rollout import RolloutEnv
from mmsr_train.sft import SFTRunConfig, TrajectoryCollator, build_example, load_trajectories, train_sft


@pytest.fixture
def trajectories(tmp_path: Path, question_image: Image.Image, scripted_turns: list[str]) -> Path:
    question_image.save(tmp_path / "q.png")
    rows = [
        {"image": "q.png", "question": "Who designed this?", "turns": scripted_turns},
        {"question": "What year is it?", "turns": ["<reason>I know it.</reason><answer>1851</answer>"]},
    ]
    (tmp_path / "sft.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return tmp_path / "sft.jsonl"


def test_examples_label_only_the_model_turns(
    trajectories: Path, processor: Any, index: LocalIndex, scripted_turns: list[str]
) -> None:
    first, second = load_trajectories(trajectories)
    example = build_example(first, processor, RolloutEnv(Tools(index, index)))
    tok = processor.tokenizer
    labelled = [t for t in example["labels"] if t != -100]
    assert labelled == [i for t in scripted_turns for i in tok.encode(t, add_special_tokens=False)]
    assert len(example["images"]) >= 2 and example["labels"][-1] == -100  # the closing glue is not learnt
    batch = TrajectoryCollator(processor, processor.image_token_id)(
        [example, build_example(second, processor, RolloutEnv(Tools(index, index)))]
    )
    assert batch["input_ids"].shape == batch["labels"].shape == batch["attention_mask"].shape
    assert batch["image_grid_thw"].shape[0] == len(example["images"])
    assert int(batch["mm_token_type_ids"].sum()) == int(batch["image_grid_thw"].prod(dim=-1).sum()) // 4


def test_invalid_trajectories_are_refused_with_their_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps({"question": "q", "turns": ["<answer>x</answer>"]}) + "\n")
    with pytest.raises(DataError, match="line 1: not a valid trajectory"):
        load_trajectories(path)


def test_trajectory_mode_is_read_and_checked(tmp_path: Path) -> None:
    turns = ["<reason>a</reason><text_search>heron</text_search>", "<reason>b</reason><answer>x</answer>"]
    path = tmp_path / "t.jsonl"
    path.write_text(json.dumps({"question": "q", "turns": turns, "mode": "always"}) + "\n")
    assert load_trajectories(path)[0].mode == "always"
    path.write_text(json.dumps({"question": "q", "turns": turns, "mode": "off"}) + "\n")
    with pytest.raises(DataError, match="line 1: 'mode' must be 'auto' or 'always'"):
        load_trajectories(path)


def test_a_trajectory_the_loop_cannot_replay_is_refused(processor: Any, tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    turns = ["<reason>a</reason><text_search>heron</text_search>", "<reason>b</reason><answer>x</answer>"]
    path.write_text(json.dumps({"question": "q", "turns": turns}) + "\n")
    (trajectory,) = load_trajectories(path)
    with pytest.raises(DataError, match="ended after 1 of 2 turns"):
        build_example(trajectory, processor, RolloutEnv(Tools()))  # no text search tool: the search ends it


@pytest.mark.slow
def test_sft_trains_and_saves_a_servable_checkpoint(
    trajectories: Path, tiny: Path, corpus: Path, tmp_path: Path
) -> None:
    out = tmp_path / "sft-out"
    summary = train_sft(
        SFTRunConfig(
            model=str(tiny),
            data=str(trajectories),
            output_dir=str(out),
            agent=AgentConfig(index=corpus),
            max_steps=1,
            batch_size=2,
            device="cpu",
            learning_rate=1e-3,
        )
    )
    assert summary.steps == 1 and math.isfinite(summary.logs["loss"]) and summary.logs["loss"] > 0
    assert {"model.safetensors", "prompt_pack.json", "processor_config.json"} <= {
        p.name for p in out.iterdir()
    }
