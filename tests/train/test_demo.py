"""``mmsr train demo``: gold trajectories, their token sequences, and a few seconds of the recipe."""

from __future__ import annotations

import importlib.util
import random
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mmsr_bench.world import WorldConfig, build_world, read_questions
from mmsr_bench.world.questions import Question
from mmsr_serve.agent.parser import check_trajectory
from mmsr_train.cli import train_app
from mmsr_train.demo import (
    DEMO_PACK,
    IMAGE_PIXELS,
    DemoConfig,
    LazyPool,
    encode_example,
    first_turn,
    gold_turns,
    grpo_data,
    train_sft_demo,
)

if importlib.util.find_spec("transformers") is None:  # not importorskip: importing it takes seconds
    pytest.skip("transformers is not installed", allow_module_level=True)

TINY_WORLD = WorldConfig(seed=3, entities=4, fresh_entities=1, stream=2, train_views=1, test_views=1)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("demo-world")
    build_world(out, TINY_WORLD)
    return out


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Not the session's ``tiny``: the demo recipe's image size (``max_pixels=IMAGE_PIXELS``)."""
    from mmsr_train.tiny_model import build_tiny_qwen2_5_vl

    return build_tiny_qwen2_5_vl(tmp_path_factory.mktemp("tiny"), max_pixels=IMAGE_PIXELS)


def test_gold_turns_follow_the_protocol(world: Path) -> None:
    questions = read_questions(world / "questions" / "train.jsonl")
    known = next(q for q in questions if q.known)
    unknown = next(q for q in questions if not q.known)
    assert gold_turns(known) == [f"<reason>known</reason><answer>{known.answers[0]}</answer>"]
    turns = gold_turns(unknown)
    assert len(turns) == 3 and f"<text_search>{unknown.query}</text_search>" in turns[1]
    for q in (known, unknown):
        assert check_trajectory(gold_turns(q)).valid
    DEMO_PACK.check_placeholders()


def test_examples_are_the_serving_loop_with_loss_on_model_turns_only(world: Path, tiny: Path) -> None:
    from mmsr_serve.backends.hf_core import load_processor
    from mmsr_serve.config import AgentConfig
    from mmsr_train.rollout import TRAINING_LIMITS, RolloutEnv, build_tools

    processor = load_processor(str(tiny))
    env = RolloutEnv(build_tools(AgentConfig(index=world / "corpus")), TRAINING_LIMITS, DEMO_PACK)
    question = next(q for q in read_questions(world / "questions" / "stream.jsonl"))
    example = encode_example(question, processor, env)
    tokenizer = processor.tokenizer
    text = tokenizer.decode(example.input_ids)
    assert f"name: {question.entity}" in text  # the text search's result is in the sequence
    learned = tokenizer.decode([t for t in example.labels if t != -100])
    assert learned.startswith("<reason>unknown</reason><search><img></search>")
    assert f"<answer>{question.answers[0]}</answer>" in learned and "<information>" not in learned
    images = int(example.grid_thw.prod(dim=1).sum()) // 4
    assert example.input_ids.count(tokenizer.convert_tokens_to_ids("<|image_pad|>")) == images
    assert all(int(h) * 14 <= 84 and int(w) * 14 <= 84 for _, h, w in example.grid_thw.tolist())


def test_first_turn_keeps_the_prompt_its_image_and_the_decision(world: Path, tiny: Path) -> None:
    from mmsr_serve.backends.hf_core import load_processor
    from mmsr_serve.config import AgentConfig
    from mmsr_train.rollout import TRAINING_LIMITS, RolloutEnv, build_tools

    processor = load_processor(str(tiny))
    env = RolloutEnv(build_tools(AgentConfig(index=world / "corpus")), TRAINING_LIMITS, DEMO_PACK)
    tokenizer = processor.tokenizer
    image_id = tokenizer.convert_tokens_to_ids("<|image_pad|>")
    question = next(q for q in read_questions(world / "questions" / "stream.jsonl"))
    whole = encode_example(question, processor, env)
    whole.weights = [1.0] * len(whole.labels)
    cut = first_turn(whole, image_id)
    assert len(whole.grid_thw) > 1 and len(cut.grid_thw) == 1  # the search thumbnails are gone
    assert cut.pixel_values.shape[0] == int(whole.grid_thw[0].prod())
    assert cut.input_ids.count(image_id) == int(cut.grid_thw[0].prod()) // 4
    assert cut.input_ids == whole.input_ids[: len(cut.input_ids)]
    assert len(cut.labels) == len(cut.input_ids) == len(cut.weights or [])
    learned = tokenizer.decode([t for t in cut.labels if t != -100])
    assert learned == "<reason>unknown</reason><search><img></search>"
    assert tokenizer.decode(cut.input_ids).endswith(learned)
    known = next(q for q in read_questions(world / "questions" / "train.jsonl") if q.known)
    single = first_turn(encode_example(known, processor, env), image_id)  # the answer is the turn
    learned = tokenizer.decode([t for t in single.labels if t != -100])
    assert learned == f"<reason>known</reason><answer>{known.answers[0]}</answer>"


def test_always_mode_examples_start_after_the_loops_image_search(world: Path, tiny: Path) -> None:
    from mmsr_serve.backends.hf_core import load_processor
    from mmsr_serve.config import AgentConfig
    from mmsr_train.rollout import TRAINING_LIMITS, RolloutEnv, build_tools

    processor = load_processor(str(tiny))
    env = RolloutEnv(build_tools(AgentConfig(index=world / "corpus")), TRAINING_LIMITS, DEMO_PACK)
    question = next(q for q in read_questions(world / "questions" / "train.jsonl") if q.known)
    assert gold_turns(question, "always")[0].startswith("<reason>seen</reason><text_search>")
    example = encode_example(question, processor, env, "always")
    tokenizer = processor.tokenizer
    text = tokenizer.decode(example.input_ids)
    first_model_turn = text.index("<reason>")
    assert text.index(question.entity) < first_model_turn  # the image search's titles come first
    learned = tokenizer.decode([t for t in example.labels if t != -100])
    assert learned.startswith(f"<reason>seen</reason><text_search>{question.query}</text_search>")
    assert learned.endswith(f"<answer>{question.answers[0]}</answer>")


def test_lazy_pool_encodes_each_question_once() -> None:
    calls: list[str] = []
    questions = [Question(id=str(i), question="q", answers=("a",), split="train") for i in range(3)]

    def encode(q: Question) -> object:
        calls.append(q.id)
        return q.id

    pool = LazyPool(questions, encode)  # type: ignore[arg-type]
    rng = random.Random(0)
    for _ in range(4):
        assert len(pool.sample(rng, 2)) == 2
    assert sorted(set(calls)) == sorted(calls) and len(calls) <= 3


@pytest.mark.slow
def test_a_few_seconds_of_sft_give_a_servable_checkpoint(world: Path, tiny: Path, tmp_path: Path) -> None:
    from mmsr_serve.agent.prompts import load_pack

    config = DemoConfig(out=str(tmp_path), batch_size=4, warmup_steps=1)
    out = train_sft_demo(tiny, world, tmp_path / "sft", config, seconds=1.0)
    assert (out / "model.safetensors").is_file() and (out / "tokenizer.json").is_file()
    assert load_pack(out / "prompt_pack.json") == DEMO_PACK
    assert "sft done" in (tmp_path / "train.log").read_text()
    # the decision stage: from that checkpoint, reasoning and values weighted, constant lr
    stage = DemoConfig(out=str(tmp_path), batch_size=4, value_weight=8, reason_weight=8)
    second = train_sft_demo(
        out, world, tmp_path / "sft-2", stage, seconds=1.0, constant_lr=1e-4, first_turns=0.5
    )
    assert (second / "model.safetensors").is_file()
    assert (tmp_path / "train.log").read_text().count("sft done") == 2


def test_cli_lists_the_demo_recipe() -> None:
    result = CliRunner().invoke(train_app, ["demo", "--help"])
    assert result.exit_code == 0
    flags = ("--minutes", "--seed", "--value-weight", "--always-share", "--known-share", "--first-turns")
    for flag in (*flags, "--decision-first-turns", "--grpo-known-share", "--init", "--learning-rate"):
        assert flag in result.output
    with pytest.raises(ValueError, match="first_turns"):
        DemoConfig(out="x", first_turns=-0.1)
    with pytest.raises(ValueError, match="always_share"):
        DemoConfig(out="x", always_share=1.5)
    with pytest.raises(ValueError, match="value_weight"):
        DemoConfig(out="x", value_weight=0)
    with pytest.raises(ValueError, match="leaves no first SFT stage"):
        DemoConfig(out="x", minutes=5)  # 3.75 SFT minutes, 6 of them for the decision stage


def test_end_of_turn_labels_keep_the_model_turns_and_add_the_end_token() -> None:
    from mmsr_train.demo import Example, end_of_turn_labels

    end = 9
    ids = [1, 2, 3, 4, end, 5, 6, end]
    labels = [-100, -100, 3, 4, -100, -100, -100, -100]  # model turn 3 4, then glue, then a prompt
    out = end_of_turn_labels(Example(ids, labels, None, None), end)
    assert out.labels == [-100, -100, 3, 4, end, -100, -100, -100]


def test_value_weights_cover_the_query_answer_and_reasoning_spans() -> None:
    from mmsr_train.demo import Example, value_weights

    tags = {"<text_search>": 10, "</text_search>": 11, "<answer>": 12, "</answer>": 13}
    tags |= {"<reason>": 14, "</reason>": 15}
    # model turn: 1 10 5 6 11 | env: 7 7 | model turn: 12 8 13
    ids = [1, 10, 5, 6, 11, 7, 7, 12, 8, 13]
    labels = [1, 10, 5, 6, 11, -100, -100, 12, 8, 13]
    weights = value_weights(Example(ids, labels, None, None), tags, 3.0)
    assert weights == [1.0, 1.0, 3.0, 3.0, 3.0, 0.0, 0.0, 1.0, 3.0, 3.0]
    # a reasoning span: its content and closing tag take reason_weight
    ids = [14, 4, 15, 12, 8, 13]
    weights = value_weights(Example(ids, ids, None, None), tags, 3.0, reason_weight=2.0)
    assert weights == [1.0, 2.0, 2.0, 1.0, 3.0, 3.0]


def test_weighted_loss_is_cross_entropy_when_weights_are_one() -> None:
    import torch

    from mmsr_train.demo import weighted_loss

    torch.manual_seed(0)
    logits = torch.randn(2, 5, 7)
    labels = torch.tensor([[-100, 1, 2, -100, 4], [-100, -100, 3, 3, -100]])
    ones = (labels != -100).float()
    plain = torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, 7), labels[:, 1:].reshape(-1))
    assert torch.allclose(weighted_loss(logits, labels, ones), plain)
    # doubling the weight of one target moves the loss towards that target's loss
    heavy = ones.clone()
    heavy[0, 2] = 5.0
    token_loss = torch.nn.functional.cross_entropy(logits[0, 1:2], labels[0, 2:3])
    shifted = weighted_loss(logits, labels, heavy)
    assert abs(float(shifted - token_loss)) < abs(float(plain - token_loss))


def test_collate_pads_the_weights_with_zeros_and_leaves_them_out_when_absent() -> None:
    import torch

    from mmsr_train.demo import Example, collate

    pixels, grid = torch.zeros(4, 3), torch.tensor([[1, 2, 2]])
    short = Example([1, 2], [1, 2], pixels, grid, weights=[1.0, 8.0])
    long = Example([1, 2, 3], [1, 2, 3], pixels, grid, weights=[1.0, 1.0, 8.0])
    batch = collate([short, long], pad_id=0, image_token_id=9)
    assert batch["weights"].tolist() == [[1.0, 8.0, 0.0], [1.0, 1.0, 8.0]]
    plain = collate([Example([1, 2], [1, 2], pixels, grid)], pad_id=0, image_token_id=9)
    assert "weights" not in plain


def test_grpo_data_asks_the_known_share_on_known_entities(world: Path, tmp_path: Path) -> None:
    import json

    train = read_questions(world / "questions" / "train.jsonl")
    known = sum(q.known for q in train)
    size = 2 * known
    path = grpo_data(world, tmp_path / "g.jsonl", seed=0, size=size, known_share=0.25)
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    assert len(rows) == size and sum(r["known"] for r in rows) == round(size * 0.25)
    assert all(Path(r["image"]).is_file() for r in rows)
    capped = grpo_data(world, tmp_path / "cap.jsonl", seed=0, size=size, known_share=0.9)
    rows = [json.loads(line) for line in capped.read_text().splitlines()]
    assert len(rows) == size and sum(r["known"] for r in rows) == known  # all there are
    everything = grpo_data(world, tmp_path / "all.jsonl", seed=0, size=10_000)
    rows = [json.loads(line) for line in everything.read_text().splitlines()]
    stream = read_questions(world / "questions" / "stream.jsonl")
    assert len(rows) == len(train) + len(stream) and sum(r["known"] for r in rows) == known
