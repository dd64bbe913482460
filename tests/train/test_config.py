"""The GRPO run config: the paper's defaults, a config file, flags over it, clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from mmsr_serve.errors import ConfigError
from mmsr_train.config import GRPORunConfig
from mmsr_train.grpo import grpo_args


def test_defaults_are_the_papers() -> None:
    config = GRPORunConfig(model="m", train_data="t.jsonl", output_dir="o")
    limits = config.limits()
    assert (limits.max_turns, limits.max_image_searches, limits.max_text_searches, limits.top_k) == (
        3,
        1,
        2,
        5,
    )
    assert (limits.max_new_tokens, limits.max_total_tokens, limits.recover) == (2048, 8192, False)
    assert (config.learning_rate, config.beta, config.loss_type) == (2e-6, 0.001, "dapo")
    assert (config.search_penalty, config.format_weight) == (0.1, 0.1)
    args = grpo_args(GRPORunConfig(model="m", train_data="t", output_dir="o", device="cpu"), has_eval=False)
    assert args.max_completion_length == 8192 and args.per_device_train_batch_size == 8
    assert args.loss_type == "dapo" and args.beta == 0.001 and args.use_cpu and not args.bf16


def test_file_then_flags(tmp_path: Path) -> None:
    path = tmp_path / "run.yaml"
    path.write_text("model: m\ntrain_data: t.jsonl\noutput_dir: o\nnum_generations: 4\nbeta: 0.0\n")
    config = GRPORunConfig.load(path, num_generations=None, learning_rate=1e-5)
    assert (config.num_generations, config.beta, config.learning_rate) == (4, 0.0, 1e-5)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "model: m\ntrain_data: t\noutput_dir: o\nlearning_rat: 1\n",
            "unknown run config keys: \\['learning_rat'\\]",
        ),
        ("model: m\n", "missing run config keys: \\['output_dir', 'train_data'\\]"),
        ("model: m\ntrain_data: t\noutput_dir: o\nnum_generations: 1\n", "at least 2"),
        ("model: m\ntrain_data: t\noutput_dir: o\nmax_turns: 0\n", "max_turns"),
        ("- a list\n", "must hold a mapping"),
        (
            "model: m\ntrain_data: t\noutput_dir: o\nfinal_eval_modes: [off, rag]\n",
            "\\['rag'\\] are not search modes",
        ),
    ],
)
def test_bad_configs(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "run.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        GRPORunConfig.load(path)


async def test_tools_come_from_the_serving_search_layer(tmp_path: Path, corpus: Path) -> None:
    from mmsr_serve.config import AgentConfig
    from mmsr_serve.errors import CacheMissError
    from mmsr_train.rollout import build_tools

    local = build_tools(AgentConfig(index=corpus, search_cache=tmp_path / "cache.sqlite"))
    hits = await local.text.search_text("glass heron", 3)  # type: ignore[union-attr]
    assert hits.provider == "local"
    # replaying web searches needs no key, and answers only what was recorded
    web = build_tools(
        AgentConfig(
            search_cache=tmp_path / "web.sqlite",
            search_cache_mode="replay",
            image_search=["serpapi-lens"],
            text_search=["serpapi"],
        )
    )
    assert web.image is not None and web.text is not None
    with pytest.raises(CacheMissError):
        await web.text.search_text("never recorded", 5)
    with pytest.raises(ConfigError, match="no search tools"):
        build_tools(AgentConfig())


def test_importing_the_package_and_cli_loads_no_heavy_library() -> None:
    import subprocess
    import sys

    code = (
        "import sys, mmsr_train, mmsr_train.cli, mmsr_train.grpo, mmsr_train.sft;"
        "print([m for m in ('torch', 'transformers', 'trl', 'datasets') if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == "[]"


def test_training_on_from_a_checkpoint_keeps_its_recorded_pack_and_limits(tmp_path: Path) -> None:
    # issue 16, item 2: continuing from a checkpoint trained with another pack switched to the
    # default pack (GRPO and SFT) and wrote that into the new checkpoint
    import json
    from dataclasses import replace

    from mmsr_serve.agent.prompts import default_pack
    from mmsr_serve.config import RECORD_FILE
    from mmsr_train.cli import _agent

    start = tmp_path / "ckpt"
    start.mkdir()
    replace(default_pack(), name="theirs").save(start / "prompt_pack.json")
    (start / RECORD_FILE).write_text(json.dumps({"max_turns": 2, "max_text_searches": 1}))
    grpo = GRPORunConfig.load(model=str(start), train_data="t.jsonl", output_dir="o")
    sft = _agent(None, start=str(start))
    for agent in (grpo.agent, sft):
        assert agent.prompt_pack == start / "prompt_pack.json"
        assert (agent.max_turns, agent.max_text_searches) == (2, 1)
    mine = tmp_path / "mine.json"
    default_pack().save(mine)
    chosen = GRPORunConfig.load(
        model=str(start), train_data="t.jsonl", output_dir="o", prompt_pack=str(mine), max_turns=3
    )
    assert chosen.agent.prompt_pack == mine and chosen.agent.max_turns == 3  # what the run says wins
    assert GRPORunConfig.load(model="org/hub-name", train_data="t", output_dir="o").agent.prompt_pack is None


def test_the_end_of_run_table_and_trajectory_logging_options() -> None:
    config = GRPORunConfig.load(model="m", train_data="t", output_dir="o", device="cpu")
    assert config.final_eval_modes == ["off", "always", "auto"] and config.eval_on_start
    args = grpo_args(config, has_eval=True)
    assert args.eval_on_start and not args.log_completions
    assert not grpo_args(config, has_eval=False).eval_on_start  # nothing to evaluate
    flags = GRPORunConfig.load(
        model="m", train_data="t", output_dir="o", final_eval_modes="auto, off", log_trajectories=True
    )
    assert flags.final_eval_modes == ["auto", "off"]
    assert grpo_args(flags, has_eval=False).log_completions
    assert (
        GRPORunConfig.load(
            model="m", train_data="t", output_dir="o", final_eval_modes="none"
        ).final_eval_modes
        == []
    )


def test_yaml_reads_an_unquoted_off_as_the_mode(tmp_path: Path) -> None:
    path = tmp_path / "run.yaml"
    path.write_text("model: m\ntrain_data: t\noutput_dir: o\nfinal_eval_modes: [off, auto]\n")
    assert GRPORunConfig.load(path).final_eval_modes == ["off", "auto"]
