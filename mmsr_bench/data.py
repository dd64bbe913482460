"""Question sets: questions about images with their accepted answers (training data, evaluation
and load-benchmark workloads).

Two layouts are read, each validated row by row (a :class:`DataError` names the file and the row):

- **JSONL** (ours), one object a line: ``{"image": "path", "question": "...", "answers": ["...", ...]}``.
  ``image`` is optional (a text-only question) and relative to the file's folder; the first answer
  is the ground truth, the others are candidate answers (a single string is one answer).
  Optional: ``id``, ``data_source``, ``category`` (``search_free`` / ``search_required``, as
  written by ``mmsr train curate``).
- **FVQA parquet**, the released veRL layout: ``prompt`` (chat messages, or a string), ``images``
  (encoded bytes: a list of ``{"bytes": ...}`` or raw bytes), ``reward_model`` (``ground_truth``,
  ``candidate_answers``), ``data_source``. The question is the text of the last user message with
  ``<image>`` markers removed and, when the text carries instructions, what follows its last
  ``Question:``. Parquet files with plain ``question`` / ``image`` / ``ground_truth`` (or ``answer``)
  / ``candidate_answers`` columns (the Hub's FVQA viewer layout) are read too.
"""

from __future__ import annotations

import io
import json
import os
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image, UnidentifiedImageError

from mmsr_serve.errors import MMSRError
from mmsr_serve.images import MAX_ASPECT_RATIO, MAX_DECODED_PIXELS


class DataError(MMSRError):
    """A data file or one of its rows is not usable; the message names the file and the row."""


_KNOWN = {"search_free": True, "search_required": False}


@dataclass(frozen=True)
class Sample:
    question: str
    answers: tuple[str, ...]
    """The ground truth first, then the candidate answers."""
    image: bytes | Path | None = None
    """Encoded image bytes or a file path; None for a text-only question."""
    id: str = ""
    data_source: str = ""
    category: str = ""

    @property
    def ground_truth(self) -> str:
        return self.answers[0]

    @property
    def candidate_answers(self) -> list[str]:
        return list(self.answers[1:])

    def image_bytes(self) -> bytes | None:
        return self.image.read_bytes() if isinstance(self.image, Path) else self.image

    @property
    def known(self) -> bool | None:
        """Whether the question is answerable without search, by its ``category`` (None: unknown)."""
        return _KNOWN.get(self.category)


def load_samples(path: str | os.PathLike[str]) -> list[Sample]:
    """Read a JSONL or parquet file of samples (by its suffix: ``.pq`` is parquet too, as the
    release names its data files)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    if path.suffix in (".parquet", ".pq"):
        return load_parquet(path)
    if path.suffix in (".jsonl", ".json"):
        return load_jsonl(path)
    raise DataError(f"{path}: expected a .jsonl, .parquet or .pq file")


def jsonl_rows(path: Path) -> Iterator[tuple[int, str, dict[str, Any]]]:
    """The JSON objects of a JSONL file with their line number and a ``where`` for errors."""
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{path}, line {number}"
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(f"{where}: not JSON ({exc})") from exc
        if not isinstance(row, dict):
            raise DataError(f"{where}: expected a JSON object")
        yield number, where, row


def load_jsonl(path: str | os.PathLike[str]) -> list[Sample]:
    path = Path(path)
    samples = []
    for number, where, row in jsonl_rows(path):
        image = row.get("image")
        image_path = None
        if image is not None:
            if not isinstance(image, str) or not image:
                raise DataError(f"{where}: 'image' must be a file path")
            image_path = (path.parent / image).resolve()
            if not image_path.is_file():
                raise DataError(f"{where}: image file not found: {image_path}")
            check_image(image_path.read_bytes(), where)
        samples.append(
            Sample(
                question=_question(row.get("question"), where),
                answers=_answers(row.get("answers"), where),
                image=image_path,
                id=str(row.get("id") or f"{path.stem}-{number}"),
                data_source=str(row.get("data_source") or ""),
                category=str(row.get("category") or ""),
            )
        )
    if not samples:
        raise DataError(f"{path}: no samples")
    return samples


def load_parquet(path: str | os.PathLike[str]) -> list[Sample]:
    import pyarrow.parquet as pq  # type: ignore[import-untyped]

    path = Path(path)
    rows = pq.read_table(path).to_pylist()
    if not rows:
        raise DataError(f"{path}: no samples")
    return [_parquet_sample(row, f"{path}, row {i}", f"{path.stem}-{i}") for i, row in enumerate(rows)]


def _parquet_sample(row: dict[str, Any], where: str, default_id: str) -> Sample:
    if "reward_model" in row:
        reward = row["reward_model"]
        if not isinstance(reward, dict):
            raise DataError(f"{where}: 'reward_model' must hold ground_truth and candidate_answers")
        truth, candidates = reward.get("ground_truth"), reward.get("candidate_answers")
        question = _question(_prompt_question(row.get("prompt")), where)
        image = _image_bytes(row.get("images"), where)
    else:
        truth = row.get("ground_truth", row.get("answer"))
        candidates = row.get("candidate_answers")
        question = _question(row.get("question"), where)
        image = _image_bytes(row.get("image"), where)
    if isinstance(candidates, str):  # some exports store the list as JSON text
        try:
            candidates = json.loads(candidates) if candidates.strip() else []
        except json.JSONDecodeError:
            candidates = [candidates]
    truths = list(truth) if isinstance(truth, list | tuple) else [truth]
    answers = _answers([*truths, *(candidates or [])], where)
    extra = row.get("extra_info") if isinstance(row.get("extra_info"), dict) else {}
    return Sample(
        question=question,
        answers=answers,
        image=image,
        id=str(row.get("id") or row.get("data_id") or (extra or {}).get("index") or default_id),
        data_source=str(row.get("data_source") or ""),
        category=str(row.get("category") or ""),
    )


def _prompt_question(prompt: Any) -> Any:
    if isinstance(prompt, list | tuple):
        users = [m for m in prompt if isinstance(m, dict) and m.get("role") == "user"]
        prompt = users[-1].get("content") if users else None
    if isinstance(prompt, list):  # content parts
        prompt = "".join(p.get("text") or "" for p in prompt if isinstance(p, dict))
    if not isinstance(prompt, str):
        return None
    text = prompt.replace("<image>", " ")
    if "Question:" in text:
        text = text.rsplit("Question:", 1)[1]
    return text.strip()


def _image_bytes(value: Any, where: str) -> bytes | None:
    if isinstance(value, list | tuple):
        if len(value) > 1:
            raise DataError(f"{where}: {len(value)} images; one image per question is supported")
        value = value[0] if value else None
    if isinstance(value, dict):
        value = value.get("bytes")
    if value is None:
        return None
    if not isinstance(value, bytes) or not value:
        raise DataError(f"{where}: the image must be encoded bytes")
    check_image(value, where)
    return value


def check_image(data: bytes, where: str) -> None:
    """Fail at load time, naming the row, on an image the model could not take: undecodable, too
    large, or with sides too far apart for the processor (a crash mid-run names nothing)."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            w, h = image.size
            image.verify()
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as exc:
        raise DataError(f"{where}: the image cannot be decoded ({exc})") from exc
    if w * h > MAX_DECODED_PIXELS:
        raise DataError(f"{where}: the image is {w}x{h} pixels, more than {MAX_DECODED_PIXELS}")
    if max(w, h) > MAX_ASPECT_RATIO * min(w, h):
        raise DataError(
            f"{where}: the image is {w}x{h} pixels, sides more than {MAX_ASPECT_RATIO} times apart"
        )


def _question(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise DataError(f"{where}: 'question' must be a non-empty string")
    return value.strip()


def _answers(value: Any, where: str) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list | tuple) or not value:
        raise DataError(f"{where}: 'answers' must be a non-empty list of strings")
    answers = [a.strip() if isinstance(a, str) else a for a in value]
    if not all(isinstance(a, str) and a for a in answers):
        raise DataError(f"{where}: every answer must be a non-empty string")
    return tuple(dict.fromkeys(answers))


def write_jsonl(
    samples: Iterable[Sample], path: str | os.PathLike[str], *, images_dir: str = "images"
) -> Path:
    """Write samples in our JSONL layout; image bytes go to files under ``images_dir`` beside it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = []
    for sample in samples:
        row: dict[str, Any] = {"id": sample.id, "question": sample.question, "answers": list(sample.answers)}
        data = sample.image_bytes()
        if data is not None:
            name = f"{images_dir}/{_safe(sample.id)}{_suffix(data)}"
            (path.parent / name).parent.mkdir(parents=True, exist_ok=True)
            (path.parent / name).write_bytes(data)
            row["image"] = name
        for key in ("data_source", "category"):
            if getattr(sample, key):
                row[key] = getattr(sample, key)
        lines.append(json.dumps(row, ensure_ascii=False))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name) or "sample"


def _suffix(data: bytes) -> str:
    signatures: Sequence[tuple[bytes, str]] = ((b"\x89PNG", ".png"), (b"\xff\xd8", ".jpg"), (b"GIF8", ".gif"))
    return next((ext for magic, ext in signatures if data.startswith(magic)), ".img")
