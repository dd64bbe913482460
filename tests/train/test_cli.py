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
    # random weights solve nothing: no empty set written with exit code 0, but a clear error
    assert result.exit_code == 1, result.output
    assert "labels: search_free=0, search_required=0, unsolved=2" in result.output
    assert "nothing to write: the model solved 0 of 2 questions" in result.output and not out.exists()


def test_curate_uses_the_given_prompt_pack_and_writes_what_it_labelled(corpus: Path, tmp_path: Path) -> None:
    from dataclasses import replace

    from mmsr_serve.agent.prompts import default_pack
    from tests.api.live import serve_in_thread
    from tests.api.model_server import MODEL, ModelServer

    default = default_pack()
    replace(default, first_turn_text_only="MARKER-7Q " + default.first_turn_text_only).save(
        tmp_path / "pack.json"
    )
    rows = [{"question": f"Question {i}?", "answers": ["yes"]} for i in range(2)]
    (tmp_path / "q.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    out = tmp_path / "balanced.jsonl"
    model_server = ModelServer()
    model_server.enqueue(*["<reason>I know it.</reason><answer>yes</answer>"] * 4)  # off and on, 2 questions
    with serve_in_thread(model_server.app) as live:
        args = ["train", "curate", str(tmp_path / "q.jsonl"), "--out", str(out), "--model", MODEL]
        args += ["--backend", "openai", "--backend-url", live.url + "/v1", "--index", str(corpus)]
        args += ["--k", "1", "--concurrency", "1", "--search-required-ratio", "0"]
        result = CliRunner().invoke(app, [*args, "--prompt-pack", str(tmp_path / "pack.json")])
    assert result.exit_code == 0, result.output
    assert "labels: search_free=2" in result.output and out.is_file()
    first_turns = [r["messages"][-1]["content"] for r in model_server.requests]
    # one rollout per question settles search_free (no search-on rollout is needed then)
    assert len(first_turns) == 2 and all("MARKER-7Q" in str(t) for t in first_turns)
    # the same labels in the default proportions: no set can be drawn, and it says why
    model_server.replies.clear()
    model_server.enqueue(*["<reason>I know it.</reason><answer>yes</answer>"] * 4)
    with serve_in_thread(model_server.app) as live:
        args[args.index("--backend-url") + 1] = live.url + "/v1"
        args = args[: args.index("--search-required-ratio")]
        result = CliRunner().invoke(app, args)
    assert result.exit_code == 1 and "no balanced set with 68% search-required questions" in result.output


def test_bad_grpo_config_is_a_usage_error(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["train", "grpo", "--model", "m", "--output-dir", str(tmp_path)])
    assert result.exit_code == 2 and "train_data" in result.output


def test_sft_takes_the_search_providers_grpo_takes(
    tiny: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # To replay a recorded run's searches SFT needs the providers' names (the cache is keyed by
    # them), not a corpus: the same options as GRPO.
    seen: dict[str, object] = {}

    def capture(run: object) -> object:
        seen["run"] = run
        raise SystemExit(0)

    monkeypatch.setattr("mmsr_train.sft.train_sft", capture)
    args = ["train", "sft", str(tmp_path / "sft.jsonl"), "--model", str(tiny)]
    args += ["--output-dir", str(tmp_path / "o")]
    args += ["--image-search", "serpapi-lens", "--text-search", "serpapi", "--page-reader", "none"]
    args += ["--search-cache", str(tmp_path / "c.sqlite"), "--search-cache-mode", "replay"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    agent = seen["run"].agent  # type: ignore[attr-defined]
    providers = (agent.image_search, agent.text_search, agent.page_reader)
    assert providers == (["serpapi-lens"], ["serpapi"], "none")
    assert agent.search_cache_mode == "replay" and agent.index is None


def test_a_demo_budget_that_does_not_fit_is_a_sentence(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["train", "demo", str(tmp_path / "d"), "--minutes", "2"])
    flat = " ".join(result.output.replace("│", " ").split())
    assert result.exit_code == 2 and "leaves no first SFT stage" in flat and "Traceback" not in result.output
