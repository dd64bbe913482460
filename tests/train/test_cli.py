"""``mmsr train sft`` and ``mmsr train curate`` from the command line, on the tiny checkpoint."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image
from typer.testing import CliRunner

from mmsr_serve.cli import app


def test_train_help_lists_the_commands() -> None:
    result = CliRunner().invoke(app, ["train", "--help"])
    assert result.exit_code == 0
    assert all(name in result.output for name in ("tiny-model", "grpo", "sft", "curate"))


@pytest.mark.slow
def test_sft_command(
    tiny: Path, corpus: Path, tmp_path: Path, scripted_turns: list[str], question_image: Image.Image
) -> None:
    question_image.save(tmp_path / "q.png")
    row = {"image": "q.png", "question": "Who designed this?", "turns": scripted_turns}
    (tmp_path / "sft.jsonl").write_text(json.dumps(row) + "\n")
    out = tmp_path / "out"
    args = ["train", "sft", str(tmp_path / "sft.jsonl"), "--model", str(tiny), "--output-dir", str(out)]
    result = CliRunner().invoke(app, [*args, "--index", str(corpus), "--max-steps", "1", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert "trained 1 steps" in result.output and (out / "prompt_pack.json").is_file()


def test_curate_command(tiny: Path, corpus: Path, tmp_path: Path) -> None:
    rows = [{"question": f"Question {i}?", "answers": ["yes"]} for i in range(2)]
    (tmp_path / "q.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    out = tmp_path / "balanced.jsonl"
    args = ["train", "curate", str(tmp_path / "q.jsonl"), "--out", str(out), "--model", str(tiny)]
    args += ["--index", str(corpus), "--k", "1", "--max-tokens", "4", "--concurrency", "1"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "labels: search_free=" in result.output and "unsolved=" in result.output and out.is_file()


def test_bad_grpo_config_is_a_usage_error(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["train", "grpo", "--model", "m", "--output-dir", str(tmp_path)])
    assert result.exit_code == 2 and "train_data" in result.output
