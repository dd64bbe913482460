"""One agent configuration (:mod:`mmsr_serve.config`) for serving and training: given once, an option
reaches the server and the GRPO rollouts alike; checkpoints record it; old spellings still load."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from mmsr_serve.api import Settings
from mmsr_serve.config import RECORD_FILE, AgentConfig
from mmsr_serve.search.config import ProviderConfig
from mmsr_train.checkpoint import save_serving_files
from mmsr_train.config import GRPORunConfig
from mmsr_train.rollout import RolloutEnv
from tests.search.standins import KEYS, StandIn

AGENT = """\
text_search: [brave]
page_reader: none
providers:
  brave: {options: {country: DE}}
max_turns: 2
max_tokens: 64
max_image_pixels: 200000
search_timeout_s: 7
index_min_score: 0.5
search_cache: "off"
"""


async def test_one_configuration_reaches_serving_and_grpo_rollouts(tmp_path: Path, standin: StandIn) -> None:
    env = {"BRAVE_API_KEY": KEYS["brave"], "BRAVE_BASE_URL": standin.base}
    (tmp_path / "serve.yaml").write_text(AGENT)
    (tmp_path / "run.yaml").write_text(AGENT + "model: ckpt\ntrain_data: t.jsonl\noutput_dir: out\n")
    settings = Settings.load(tmp_path / "serve.yaml", env=env)
    run = GRPORunConfig.load(tmp_path / "run.yaml", env=env)

    served, trained = settings.search_config(), run.agent.search_config()
    assert served == trained
    assert served.provider("brave") == ProviderConfig(KEYS["brave"], standin.base, {"country": "DE"})
    assert (served.deadline_s, served.search_timeout_s, served.index_min_score) == (7 * 0.85, 7 * 0.4, 0.5)
    assert run.limits() == replace(settings.limits(), recover=False)
    assert (run.limits().max_turns, run.limits().max_new_tokens, run.limits().max_image_pixels) == (
        2,
        64,
        200_000,
    )
    # the provider option is in the requests of both the server's tools and the rollouts'
    server_tools = settings.build_search()
    rollout_tools = RolloutEnv.from_config(run.agent).tools
    for tool in (server_tools.text, rollout_tools.text):
        assert tool is not None
        results = await tool.search_text("glass heron", 3)
        assert results.provider == "brave" and len(results.hits) == 3
    await server_tools.aclose()
    assert [seen.params.get("country") for seen in standin.seen("brave")] == ["DE", "DE"]


def test_flags_beat_the_environment_which_beats_the_file(tmp_path: Path) -> None:
    (tmp_path / "run.yaml").write_text("model: m\ntrain_data: t\noutput_dir: o\nmax_turns: 2\ntop_k: 4\n")
    run = GRPORunConfig.load(tmp_path / "run.yaml", env={"MMSR_TOP_K": "3", "MMSR_CONFIG": "x"}, max_turns=4)
    assert (run.agent.max_turns, run.agent.top_k) == (4, 3)  # MMSR_CONFIG: the run file is the file


def test_old_spellings_load_with_a_warning(tmp_path: Path) -> None:
    with pytest.warns(FutureWarning, match="'corpus' is now called 'index'"):
        config = AgentConfig.load(env={}, corpus=str(tmp_path), reader="none", max_new_tokens=5)
    assert (config.index, config.page_reader, config.max_tokens) == (tmp_path, "none", 5)
    with pytest.warns(FutureWarning, match="'max_new_tokens' is now called 'max_tokens'"):
        run = GRPORunConfig.load(model="m", train_data="t", output_dir="o", max_new_tokens=7, env={})
    assert run.limits().max_new_tokens == 7
    with pytest.warns(FutureWarning):  # the new name wins where both are given
        assert AgentConfig(max_tokens=9, max_new_tokens=3).max_tokens == 9  # type: ignore[call-arg]


def test_a_checkpoint_records_its_configuration_and_serving_starts_from_it(tmp_path: Path) -> None:
    ckpt = tmp_path / "ckpt"
    agent = AgentConfig.load(
        env={"BRAVE_API_KEY": "brave-SECRET"},
        index=tmp_path,
        text_search=["brave"],
        max_turns=2,
        max_tokens=64,
        max_image_pixels=200_000,
        summarizer_api_key="llm-SECRET",
    )
    from mmsr_serve.agent.prompts import default_pack

    save_serving_files(ckpt, default_pack(), agent)
    text = (ckpt / RECORD_FILE).read_text()
    assert "SECRET" not in text and json.loads(text)["max_turns"] == 2
    assert (ckpt / "prompt_pack.json").is_file()

    settings = Settings.load(env={}, backend="hf", model=str(ckpt))
    assert (settings.max_turns, settings.max_tokens, settings.max_image_pixels) == (2, 64, 200_000)
    assert settings.index is None and settings.text_search == []  # only the protocol is taken over
    assert Settings.load(env={}, backend="hf", model=str(ckpt), max_turns=3).max_turns == 3
    # a checkpoint served by vLLM: its record is a config file the gateway reads
    gateway = Settings.load(ckpt / RECORD_FILE, env={}, model="served-name")
    assert gateway.index == tmp_path and gateway.text_search == ["brave"] and gateway.max_turns == 2
