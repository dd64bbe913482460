"""Data loaders: our JSONL and the released FVQA parquet layout, with errors that name the bad row."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from mmsr_bench.data import DataError, Sample, load_samples, write_jsonl
from mmsr_train.grpo import split_eval, to_trl_dataset


def png(colour: str = "red") -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (8, 8), colour).save(buf, format="PNG")
    return buf.getvalue()


def test_jsonl_rows_with_and_without_images(tmp_path: Path) -> None:
    (tmp_path / "img").mkdir()
    (tmp_path / "img" / "a.png").write_bytes(png())
    rows = [
        {"image": "img/a.png", "question": " What is it? ", "answers": ["Heron", "heron bird", "Heron"]},
        {"question": "Capital of France?", "answers": "Paris", "category": "search_free", "id": "q2"},
    ]
    path = tmp_path / "set.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n\n")
    first, second = load_samples(path)
    assert first.question == "What is it?" and first.answers == ("Heron", "heron bird")
    assert first.image == (tmp_path / "img" / "a.png").resolve() and first.image_bytes() == png()
    assert first.id == "set-1" and first.ground_truth == "Heron" and first.candidate_answers == ["heron bird"]
    assert second.image is None and second.answers == ("Paris",) and second.category == "search_free"


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("not json", "line 2: not JSON"),
        (json.dumps({"question": "", "answers": ["a"]}), "line 2: 'question' must be a non-empty string"),
        (json.dumps({"question": "q", "answers": []}), "line 2: 'answers' must be a non-empty list"),
        (
            json.dumps({"question": "q", "answers": ["a", 3]}),
            "line 2: every answer must be a non-empty string",
        ),
        (
            json.dumps({"question": "q", "answers": ["a"], "image": "missing.png"}),
            "line 2: image file not found",
        ),
        (json.dumps(["q"]), "line 2: expected a JSON object"),
    ],
)
def test_jsonl_errors_name_the_row(tmp_path: Path, line: str, message: str) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps({"question": "fine", "answers": ["a"]}) + "\n" + line + "\n")
    with pytest.raises(DataError, match=message):
        load_samples(path)


def test_released_fvqa_parquet_layout(tmp_path: Path) -> None:
    rows = [
        {
            "prompt": [
                {"role": "user", "content": "<image>\nSome instructions.\nQuestion: Who built this bridge?"}
            ],
            "images": [{"bytes": png(), "path": None}],
            "reward_model": {"ground_truth": "Eiffel", "candidate_answers": ["Gustave Eiffel"]},
            "data_source": "fvqa_train",
            "extra_info": {"index": 7},
        },
        {
            "prompt": [{"role": "user", "content": "Which river is this?"}],
            "images": [],
            "reward_model": {"ground_truth": "Seine", "candidate_answers": []},
            "data_source": "fvqa_train",
            "extra_info": {"index": 8},
        },
    ]
    path = tmp_path / "fvqa_train.parquet"
    pq.write_table(pa.Table.from_pylist(rows), path)
    first, second = load_samples(path)
    assert first.question == "Who built this bridge?" and first.answers == ("Eiffel", "Gustave Eiffel")
    assert first.image == png() and first.data_source == "fvqa_train" and first.id == "7"
    assert second.question == "Which river is this?" and second.image is None and second.answers == ("Seine",)
    as_text = [{**rows[1], "reward_model": {"ground_truth": "Seine", "candidate_answers": '["La Seine"]'}}]
    pq.write_table(pa.Table.from_pylist(as_text), path)  # some exports keep the list as JSON text
    assert load_samples(path)[0].answers == ("Seine", "La Seine")
    release_named = path.rename(tmp_path / "mini_data.pq")  # the release's own suffix
    assert load_samples(release_named)[0].answers == ("Seine", "La Seine")


def test_plain_parquet_layout_and_its_errors(tmp_path: Path) -> None:
    path = tmp_path / "plain.parquet"
    rows = [
        {
            "question": "Q?",
            "image": {"bytes": png(), "path": None},
            "answer": "A",
            "category": "search_required",
        }
    ]
    pq.write_table(pa.Table.from_pylist(rows), path)
    (sample,) = load_samples(path)
    assert sample.answers == ("A",) and sample.category == "search_required" and sample.image == png()
    bad = tmp_path / "bad.parquet"
    pq.write_table(pa.Table.from_pylist([*rows, {**rows[0], "question": " "}]), bad)
    with pytest.raises(DataError, match=r"bad.parquet, row 1: 'question'"):
        load_samples(bad)
    (tmp_path / "set.csv").write_text("question,answer\n")
    with pytest.raises(DataError, match=r"expected a \.jsonl, \.parquet or \.pq"):
        load_samples(tmp_path / "set.csv")


def test_write_jsonl_round_trips(tmp_path: Path) -> None:
    samples = [
        Sample("Q1?", ("A", "a2"), png(), id="x/1", category="search_free"),
        Sample("Q2?", ("B",), None, id="x2", data_source="s"),
    ]
    path = write_jsonl(samples, tmp_path / "out" / "set.jsonl")
    again = load_samples(path)
    assert [(s.question, s.answers, s.image_bytes(), s.category) for s in again] == [
        ("Q1?", ("A", "a2"), png(), "search_free"),
        ("Q2?", ("B",), None, ""),
    ]
    assert (tmp_path / "out" / "images" / "x_1.png").is_file()


def test_trl_dataset_layout(tmp_path: Path) -> None:
    samples = [Sample("Q1?", ("A", "a2"), png()), Sample("Q2?", ("B",))]
    dataset = to_trl_dataset(samples)
    assert dataset[0]["prompt"] == [{"role": "user", "content": "Q1?"}]
    assert dataset[0]["image"].size == (8, 8) and dataset[1]["image"] is None
    assert dataset[0]["candidate_answers"] == ["a2"] and dataset[1]["ground_truth"] == "B"
    assert "image" not in to_trl_dataset(samples[1:]).column_names
    train, held = split_eval([Sample(f"Q{i}", ("a",)) for i in range(10)], 0.2, seed=0)
    assert len(train) == 8 and len(held) == 2 and not {s.question for s in train} & {s.question for s in held}


@pytest.mark.parametrize(
    ("image", "message"),
    [
        (b"<html>not a picture</html>", "cannot be decoded"),
        (None, "sides more than 199 times apart"),  # a 600x2 sliver
    ],
)
def test_unusable_images_fail_at_load_time_naming_the_row(
    tmp_path: Path, image: bytes | None, message: str
) -> None:
    if image is None:
        buf = io.BytesIO()
        Image.new("RGB", (600, 2)).save(buf, "PNG")
        image = buf.getvalue()
    (tmp_path / "bad.png").write_bytes(image)
    path = tmp_path / "set.jsonl"
    path.write_text(
        json.dumps({"question": "Q?", "answers": ["a"]})
        + "\n"
        + json.dumps({"image": "bad.png", "question": "Q?", "answers": ["a"]})
        + "\n"
    )
    with pytest.raises(DataError, match=rf"set\.jsonl, line 2: .*{message}"):
        load_samples(path)
