"""One GRPO step on CPU with real multi-turn search rollouts of the tiny checkpoint.

Rollout 0 of the group is scripted (image search -> text search -> correct answer) so the group's
rewards differ; rollout 1 is sampled by the random model. Checked: the rollouts' env_mask reaches
the loss as TRL's tool_mask and covers exactly the sampled tokens; the training forward pass gets
one image feature block per image of the trajectories (the user's image and the thumbnails); the
loss is finite, the gradient non-zero, the weights move; reward parts and search metrics are logged.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from mmsr_train.config import GRPORunConfig
from mmsr_train.generators import TeacherGenerator
from mmsr_train.grpo import build_trainer
from mmsr_train.policy import TokenGenerator
from mmsr_train.rollout import RolloutTask


@pytest.fixture(scope="module")
def train_file(tmp_path_factory: pytest.TempPathFactory, question_image: Image.Image, designer: str) -> Path:
    folder = tmp_path_factory.mktemp("grpo-data")
    question_image.save(folder / "q.png")
    row = {"image": "q.png", "question": "Who designed this?", "answers": [designer]}
    (folder / "train.jsonl").write_text(json.dumps(row) + "\n")
    return folder / "train.jsonl"


def tiny_run(tiny: Path, corpus: Path, train_data: Path, out: Path, **options: Any) -> GRPORunConfig:
    """A run of the tiny checkpoint on CPU over the fixture corpus, two rollouts per prompt."""
    paths = {"model": str(tiny), "train_data": str(train_data), "output_dir": str(out), "index": str(corpus)}
    common: dict[str, Any] = {"num_generations": 2, "device": "cpu", "save_steps": 1000}
    return GRPORunConfig.load(**paths, **common | options)


@pytest.mark.slow
def test_one_grpo_step_with_search_rollouts(
    tiny: Path, corpus: Path, train_file: Path, scripted_turns: list[str], tmp_path: Path
) -> None:
    import torch  # here, not at collection: importing it takes seconds and only this slow test needs it

    config = tiny_run(
        tiny,
        corpus,
        train_file,
        tmp_path / "out",
        max_steps=1,
        max_tokens=96,
        warmup_ratio=0.0,
        max_total_tokens=1500,
        learning_rate=1e-3,
    )

    tasks: list[RolloutTask] = []

    def script_first(i: int, task: RolloutTask, generator: TokenGenerator) -> TokenGenerator:
        tasks.append(task)
        return (
            TeacherGenerator(trainer.processing_class.tokenizer, scripted_turns, generator)
            if i == 0
            else generator
        )

    trainer = build_trainer(config, wrap=script_first)
    model = trainer.model
    forwards: list[dict[str, Any]] = []

    def record(module: Any, args: Any, kwargs: dict[str, Any]) -> None:
        if torch.is_grad_enabled():
            forwards.append(dict(kwargs))

    model.register_forward_pre_hook(record, with_kwargs=True)
    losses: list[dict[str, Any]] = []
    compute = trainer._compute_loss

    def capture(model_: Any, inputs: dict[str, Any]) -> Any:
        losses.append(inputs)
        return compute(model_, inputs)

    trainer._compute_loss = capture
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    trainer.train()

    rollouts = trainer.last_rollouts
    # the rollouts load the image file's own bytes (as the server does: same sha256 cache key)
    assert tasks and all(t.image == (train_file.parent / "q.png").read_bytes() for t in tasks)
    assert [t.action for t in rollouts[0].result.turns] == ["image_search", "text_search", "answer"]
    assert rollouts[0].result.answer and rollouts[1].result.turns
    # env_mask covers exactly the sampled tokens, and reaches the loss as tool_mask
    for r in rollouts:
        sampled = [t for t, m in zip(r.trace.completion_ids, r.trace.env_mask, strict=True) if m]
        assert sampled == [t for turn in r.trace.sampled for t in turn]
    inputs = losses[0]
    loss_tokens = (inputs["completion_mask"] * inputs["tool_mask"]).sum(dim=1).tolist()
    assert sorted(loss_tokens) == sorted(sum(r.trace.env_mask) for r in rollouts)
    # one image feature block per image of the trajectories, matching the placeholders
    images = sum(len(r.trace.images) for r in rollouts)
    assert images >= 3  # the user's image twice, plus at least one thumbnail
    train_forward = forwards[0]
    assert train_forward["image_grid_thw"].shape[0] == images
    pads = int((train_forward["input_ids"] == model.config.image_token_id).sum())
    assert pads == int(train_forward["image_grid_thw"].prod(dim=-1).sum()) // 4
    assert train_forward["pixel_values"].shape[0] == int(train_forward["image_grid_thw"].prod(dim=-1).sum())
    # a finite loss, a non-zero gradient, moved weights
    logs = trainer.state.log_history[0]
    assert math.isfinite(logs["loss"]) and logs["grad_norm"] > 0
    assert any(not torch.equal(before[n], p.detach()) for n, p in model.named_parameters())
    # the reward and its parts, the search ratio and turn counts are logged
    assert logs["reward/accuracy"] == pytest.approx(0.5) and logs["rewards/mmsr_reward/mean"] > 0.4
    assert logs["search/ratio"] >= 0.5 and logs["turns/mean"] >= 2 and "reward/format" in logs
    # the release's sigmoid decay (the default schedule) drives the optimiser's rate
    assert isinstance(trainer.lr_scheduler, torch.optim.lr_scheduler.LambdaLR)
    assert trainer.lr_scheduler.lr_lambdas[0](45) == pytest.approx(0.525)


def _run(tiny: Path, corpus: Path, train_file: Path, out: Path, seed: int) -> tuple[list[Any], list[Any]]:
    limits = {"max_steps": 5, "max_tokens": 24, "max_total_tokens": 400}
    config = tiny_run(tiny, corpus, train_file, out, **limits, learning_rate=1e-3, seed=seed)
    trainer = build_trainer(config)
    sampled: list[Any] = []
    generate = trainer._generate

    def record(prompts: list[Any]) -> Any:
        out = generate(prompts)
        sampled.append([r.trace.completion_ids for r in trainer.last_rollouts])
        return out

    trainer._generate = record
    trainer.train()
    return [(e.get("loss"), e.get("grad_norm")) for e in trainer.state.log_history if "loss" in e], sampled


@pytest.mark.slow
def test_a_seed_makes_a_run_reproducible(tiny: Path, corpus: Path, train_file: Path, tmp_path: Path) -> None:
    # The rollouts of a group run concurrently; without a seed per trajectory they drew from the
    # one global generator in whatever order they reached it, and two runs diverged by step 3.
    first = _run(tiny, corpus, train_file, tmp_path / "a", seed=0)
    second = _run(tiny, corpus, train_file, tmp_path / "b", seed=0)
    assert len(first[0]) == 5 and first[1] == second[1]  # the same sampled tokens, every step
    # the same losses and gradient norms, up to the float rounding of CPU kernels' threads
    assert first[0] == [pytest.approx(pair, rel=1e-5, abs=1e-12) for pair in second[0]]
    other = _run(tiny, corpus, train_file, tmp_path / "c", seed=1)
    assert other[1] != first[1]  # and the seed matters


@pytest.mark.slow
def test_a_batch_of_only_text_questions_in_a_dataset_with_images(
    tiny: Path, corpus: Path, train_file: Path, tmp_path: Path
) -> None:
    # TRL passed images=[None, ...] to the processor for such a batch, and the run died.
    text_only_row = {"question": "Who designed the Brass Tower?", "answers": ["x"]}
    rows = [json.loads(train_file.read_text()), text_only_row]
    mixed = train_file.parent / "mixed.jsonl"
    mixed.write_text("".join(json.dumps(row) + "\n" for row in rows))
    config = tiny_run(tiny, corpus, mixed, tmp_path / "out", max_steps=4, max_tokens=16, max_total_tokens=300)
    trainer = build_trainer(config)
    text_only: list[bool] = []
    generate = trainer._generate

    def record(prompts: list[Any]) -> Any:
        out = generate(prompts)
        text_only.append(all(not r.trace.images for r in trainer.last_rollouts))
        return out

    trainer._generate = record
    trainer.train()
    assert trainer.state.global_step == 4 and any(text_only) and not all(text_only)


@pytest.mark.slow
def test_a_bf16_run_keeps_float32_master_weights(
    tiny: Path, corpus: Path, train_file: Path, tmp_path: Path
) -> None:
    # Loaded in bfloat16, 10 AdamW steps at 2e-6 changed 3.8% of the weights (the rest rounded away).
    import torch

    from mmsr_train.grpo import load_policy

    config = tiny_run(tiny, corpus, train_file, tmp_path / "o", bf16=True)
    trainer = build_trainer(config)
    assert trainer.args.bf16  # computed in bfloat16 (autocast) ...
    assert {p.dtype for p in trainer.model.parameters()} == {torch.float32}  # ... weights in float32
    model, _ = load_policy(str(tiny), bf16_weights=True)
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}  # only when asked for


@pytest.mark.slow
def test_a_run_from_yaml_with_trl_options_resumes(
    tiny: Path, corpus: Path, train_file: Path, tmp_path: Path
) -> None:
    # Any GRPOConfig option passes to TRL (validated by TRL), from the file or as a flag.
    from typer.testing import CliRunner

    from mmsr_train.cli import train_app

    out = tmp_path / "run"
    run = tmp_path / "run.yaml"
    run.write_text(
        "\n".join(
            [
                f"model: {tiny}",
                f"train_data: {train_file}",
                f"output_dir: {out}",
                f"index: {corpus}",
                "num_generations: 2",
                "max_tokens: 16",
                "max_total_tokens: 300",
                "device: cpu",
                "epsilon_high: 0.28",
                "lr_scheduler_type: cosine",
                "save_total_limit: 1",
                "save_steps: 1",
                "report_to: tensorboard",
                "max_steps: 2",
            ]
        )
        + "\n"
    )
    first = CliRunner().invoke(train_app, ["grpo", "--config", str(run), "--max-grad-norm", "0.5"])
    assert first.exit_code == 0, first.output
    recorded = json.loads((out / "mmsr_run_config.json").read_text())
    assert recorded["epsilon_high"] == 0.28 and recorded["max_grad_norm"] == 0.5
    assert [p.name for p in out.glob("checkpoint-*")] == ["checkpoint-2"]  # save_total_limit
    assert list(out.rglob("events.out.tfevents.*"))  # TensorBoard logs
    again = CliRunner().invoke(
        train_app, ["grpo", "--config", str(run), "--max-steps", "3", "--resume-from-checkpoint", "latest"]
    )
    assert again.exit_code == 0, again.output
    state = json.loads((out / "checkpoint-3" / "trainer_state.json").read_text())
    assert state["global_step"] == 3 and state["log_history"][0]["step"] == 1  # continued, not restarted
    bad = CliRunner().invoke(train_app, ["grpo", "--config", str(run), "--epsilon-hihg", "0.3"])
    assert bad.exit_code == 2 and "epsilon_hihg" in bad.output


@pytest.mark.slow
def test_evaluation_samples_the_held_out_set_and_decodes_greedily(
    tiny: Path, corpus: Path, train_file: Path, tmp_path: Path
) -> None:
    from mmsr_train.policy import TokenOutput, TokenRequest

    held = tmp_path / "held.jsonl"
    held.write_text("".join(json.dumps({"question": f"Q{i}?", "answers": ["x"]}) + "\n" for i in range(5)))
    config = tiny_run(
        tiny,
        corpus,
        train_file,
        tmp_path / "out",
        eval_data=str(held),
        eval_max_samples=2,
        eval_greedy=True,
        max_tokens=8,
        max_total_tokens=200,
    )
    temperatures: list[float | None] = []

    class Recording:
        def __init__(self, inner: TokenGenerator) -> None:
            self.inner = inner

        async def generate(self, request: TokenRequest) -> TokenOutput:
            temperatures.append(request.temperature)
            return await self.inner.generate(request)

    trainer = build_trainer(config, wrap=lambda i, task, generator: Recording(generator))
    assert len(trainer.eval_dataset) == 2  # a seeded sample of the 5 held-out questions
    trainer.evaluate()
    assert temperatures and set(temperatures) == {0.0}


@pytest.mark.slow
def test_a_run_evaluates_before_it_starts_and_ends_with_the_three_mode_table(
    tiny: Path, corpus: Path, train_file: Path, tmp_path: Path
) -> None:
    import pyarrow.parquet as pq  # type: ignore[import-untyped]
    from transformers import TrainerCallback

    from mmsr_train.grpo import train_grpo

    held = train_file.parent / "held.jsonl"
    rows = [{"image": "q.png", "question": f"Who designed this, {i}?", "answers": ["x"]} for i in range(3)]
    held.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "out"
    limits = {"max_steps": 1, "max_tokens": 12, "max_total_tokens": 300, "eval_steps": 100}
    config = tiny_run(tiny, corpus, train_file, out, eval_data=str(held), log_trajectories=True, **limits)
    logged: list[dict[str, Any]] = []

    class Record(TrainerCallback):
        def on_log(self, args: Any, state: Any, control: Any, logs: Any = None, **kwargs: Any) -> None:
            logged.append({**(logs or {}), "step": state.global_step})

    summary = train_grpo(config, callbacks=[Record()])

    assert any(e["step"] == 0 and "eval_reward" in e for e in logged)  # the baseline, before step 1
    overall = {r.mode: r for r in summary.final_eval if r.split == "all"}
    assert set(overall) == {"off", "always", "auto"} and all(r.n == 3 for r in overall.values())
    assert overall["off"].searches_per_question == 0  # off: no search tools
    assert overall["always"].image_searches_per_question == 1  # always: the image is searched first
    report = (out / "final_eval" / "report.md").read_text()
    assert "off (no search)" in report and "always (RAG workflow)" in report and "auto (on demand)" in report
    outcomes = [json.loads(line) for line in (out / "final_eval" / "outcomes.jsonl").read_text().splitlines()]
    assert len(outcomes) == 9 and {o["question_id"] for o in outcomes} == {f"held-{i}" for i in (1, 2, 3)}
    final = next(logs for logs in logged if "final_eval/auto/accuracy" in logs)
    assert final["final_eval/off/search_ratio"] == 0 and final["final_eval/always/search_ratio"] == 1
    # the trajectory table: TRL's completions log with the rollout's columns
    table = pq.read_table(out / "completions" / "completions_00001.parquet").to_pylist()
    assert len(table) == 2
    for column in (
        "ground_truth",
        "answer",
        "turns",
        "searches",
        "finish_reason",
        "accuracy",
        "search_penalty",
    ):
        assert column in table[0], column
    assert all(isinstance(row["turns"], int) and row["turns"] >= 1 for row in table)
