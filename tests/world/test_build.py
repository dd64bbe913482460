"""The world generator: deterministic bytes, the splits' promises, names the tiny tokenizer can copy."""

from __future__ import annotations

import hashlib
import json
import re
from collections import defaultdict
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mmsr_bench.world import KINDS, WorldConfig, build_world, load_manifest, plan_world, read_questions
from mmsr_bench.world.names import syllables_of
from mmsr_serve.cli import app
from mmsr_train.tiny_model import build_tokenizer
from tests.world.conftest import SMALL

TINY = WorldConfig(seed=5, entities=6, fresh_entities=2, stream=2, train_views=1, test_views=1)


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_the_same_seed_writes_the_same_bytes(tmp_path: Path) -> None:
    first, again = tmp_path / "a", tmp_path / "b"
    build_world(first, TINY, index=False)
    build_world(again, TINY, index=False)
    files = _files(first)
    assert files == _files(again)
    assert {"world.json", "corpus/docs.jsonl", "questions/train.jsonl", "questions/stream.jsonl"} <= set(
        files
    )
    other = tmp_path / "c"
    build_world(other, WorldConfig(**{**TINY.__dict__, "seed": 6}), index=False)
    assert _files(other)["corpus/docs.jsonl"] != files["corpus/docs.jsonl"]


def test_adding_stream_entities_leaves_the_rest_unchanged() -> None:
    base = plan_world(TINY)
    more = plan_world(WorldConfig(**{**TINY.__dict__, "stream": 5}))
    assert more[: len(base) - TINY.stream] == base[: len(base) - TINY.stream]
    assert len({e.name for e in more}) == len(more)


def _entities_by_split(world: Path) -> dict[str, set[str]]:
    found: dict[str, set[str]] = defaultdict(set)
    for path in (world / "questions").glob("*.jsonl"):
        for q in read_questions(path):
            found[q.split].add(q.entity)
    return found


@pytest.mark.slow
def test_splits_keep_their_promises(world: Path) -> None:
    manifest = load_manifest(world)
    groups = {e["name"]: e["group"] for e in manifest["entities"]}
    assert manifest["groups"] == {"known": 12, "heldout": 6, "unknown": 6, "fresh": 8, "stream": 8}
    split = _entities_by_split(world)
    assert {groups[n] for n in split["train"]} == {"known", "unknown"}
    assert split["test-known"] == {n for n, g in groups.items() if g == "known"}
    assert {groups[n] for n in split["test-unknown"]} == {"heldout"}
    assert {groups[n] for n in split["test-fresh"]} == {"fresh"}
    assert {groups[n] for n in split["stream"]} == {"stream"}
    for a, b in [("train", "test-unknown"), ("train", "test-fresh"), ("test-unknown", "test-fresh")]:
        assert not split[a] & split[b], (a, b)
    assert not split["stream"] & (split["train"] | split["test-unknown"] | split["test-fresh"])
    # the fresh world is another seed's: no name and no place of the main world
    fresh = [e for e in manifest["entities"] if e["group"] == "fresh"]
    main = [e for e in manifest["entities"] if e["group"] in ("known", "unknown", "heldout")]
    fresh_places = {
        e["facts"][a.key] for e in fresh for a in KINDS[e["kind"]].attributes if a.type == "place"
    }
    main_places = {e["facts"][a.key] for e in main for a in KINDS[e["kind"]].attributes if a.type == "place"}
    assert fresh_places and main_places and not fresh_places & main_places
    assert manifest["config"]["fresh_seed"] == SMALL.seed + 1


@pytest.mark.slow
def test_questions_carry_answers_queries_and_labels(world: Path) -> None:
    facts = {e["name"]: e for e in load_manifest(world)["entities"]}
    train = read_questions(world / "questions" / "train.jsonl")
    assert len(train) == (12 + 6) * SMALL.train_views * 3
    for q in train + read_questions(world / "questions" / "test-known.jsonl"):
        entity = facts[q.entity]
        assert q.answers == (entity["facts"][q.attribute],)
        assert q.query == f"{q.entity} {q.attribute}"
        assert q.known is (entity["group"] == "known")
        assert q.extra["category"] == ("search_free" if q.known else "search_required")
        assert q.question in next(a.questions for a in KINDS[q.kind].attributes if a.key == q.attribute)
        assert q.image is not None and Path(q.image).is_file()
    held_out = {q.image for q in read_questions(world / "questions" / "test-known.jsonl")}
    assert not held_out & {q.image for q in train}


@pytest.mark.slow
def test_names_and_values_are_one_token_per_syllable(world: Path) -> None:
    tokenizer = build_tokenizer()
    for entity in load_manifest(world)["entities"]:
        words = [entity["name"], *(v for k, v in entity["facts"].items() if not v.isdigit())]
        for word in words:
            assert tokenizer.tokenize(word) == syllables_of(word), word
        assert len(syllables_of(entity["name"])) == 3


@pytest.mark.slow
def test_question_views_are_never_copies_of_corpus_images(world: Path) -> None:
    digest = lambda p: hashlib.sha256(p.read_bytes()).hexdigest()  # noqa: E731
    corpus = {digest(p) for p in (world / "corpus" / "images").iterdir()}
    views = {digest(p) for p in (world / "questions" / "images").rglob("*.jpg")}
    assert len(corpus) == 40 * 3 and len(views) == 12 * 4 + 6 * 2 + 6 * 2 + 8 * 2 + 8
    assert not corpus & views


def test_a_world_is_not_written_over_by_accident(tmp_path: Path) -> None:
    config = WorldConfig(seed=1, entities=2, fresh_entities=0, train_views=1, test_views=1)
    build_world(tmp_path, config, index=False)
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError):
        build_world(tmp_path, config, index=False)
    build_world(tmp_path, WorldConfig(seed=2, entities=3, fresh_entities=0), index=False, overwrite=True)
    assert (tmp_path / "notes.txt").read_text() == "mine"
    assert len(load_manifest(tmp_path)["entities"]) == 3


@pytest.mark.parametrize(
    "bad",
    [{"known_fraction": 1.5}, {"entities": -1}, {"test_views": 0}, {"web_pages": 9}, {"kinds": ("ship",)}],
)
def test_bad_configs_are_refused(bad: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        WorldConfig(**bad)  # type: ignore[arg-type]


def test_the_cli_builds_a_world_with_its_index(tmp_path: Path) -> None:
    args = ["world", "build", str(tmp_path), "--seed", "4", "--entities", "4", "--fresh-entities", "2"]
    result = CliRunner().invoke(app, [*args, "--train-views", "1", "--test-views", "1", "--kind", "vehicle"])
    assert result.exit_code == 0, result.output
    assert "2 known" in result.output and "test-fresh.jsonl: 6 questions" in result.output
    assert (tmp_path / "corpus" / ".mmsr-index.sqlite").is_file()
    kinds = {e["kind"] for e in json.loads((tmp_path / "world.json").read_text())["entities"]}
    assert kinds == {"vehicle"}
    again = CliRunner().invoke(app, args)
    message = re.sub(r"[\s│╭╮╰╯─]+", " ", again.output)  # the error box wraps at the terminal width
    assert again.exit_code != 0 and "already holds a world" in message
