"""What a load benchmark sends: questions from a question set, as chat-completion bodies.

A workload file is one of

- a JSONL of ``{"question", "image"?, "answers"?}`` (``image``: a path relative to the file, or
  an ``http(s)`` / ``data:`` URL); the miniature world's question files are of this kind;
- an FVQA-style parquet (:func:`mmsr_bench.data.load_parquet`, images as encoded bytes; needs
  pyarrow, which the ``train`` extra brings).

:func:`request_order` samples the items with a seed, repeating the set (each pass shuffled anew)
when more requests are asked than it holds. :class:`RequestFactory` turns an item into a request
body; each distinct image is encoded once, as the original file's bytes in a data URL
(``image_as="data"``) or passed as its URL (``image_as="url"``, for items whose image is one).
"""

from __future__ import annotations

import os
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from mmsr_serve.images import bytes_data_url, file_data_url

__all__ = ["ImageAs", "RequestFactory", "WorkItem", "WorkloadError", "load_workload", "request_order"]

ImageAs = Literal["data", "url"]


class WorkloadError(ValueError):
    """A workload file or one of its rows is not usable; the message names the file and the row."""


@dataclass(frozen=True)
class WorkItem:
    id: str
    question: str
    image: str | bytes | None = None
    """A file path, an ``http(s)`` or ``data:`` URL, or encoded bytes (parquet); None: text only."""
    answers: tuple[str, ...] = ()


def load_workload(path: str | os.PathLike[str]) -> list[WorkItem]:
    path = Path(path)
    if not path.is_file():
        raise WorkloadError(f"{path}: no such file")
    if path.suffix == ".parquet":
        from mmsr_bench.data import DataError, load_parquet

        try:
            samples = load_parquet(path)
        except ImportError as exc:
            raise WorkloadError(f"{path}: reading parquet needs pyarrow ({exc})") from None
        except DataError as exc:
            raise WorkloadError(str(exc)) from None
        items = [WorkItem(s.id, s.question, s.image_bytes(), s.answers) for s in samples]
    elif path.suffix in (".jsonl", ".json"):
        items = _jsonl_items(path)
    else:
        raise WorkloadError(f"{path}: a workload is a .jsonl or .parquet file")
    if not items:
        raise WorkloadError(f"{path}: no questions")
    return items


def _jsonl_items(path: Path) -> list[WorkItem]:
    from mmsr_bench.data import DataError, jsonl_rows

    items = []
    try:
        for line_no, where, row in jsonl_rows(path):
            items.append(_item(row, where, path, line_no))
    except DataError as exc:
        raise WorkloadError(str(exc)) from None
    return items


def _item(row: dict[str, Any], where: str, path: Path, line_no: int) -> WorkItem:
    question = row.get("question")
    if not isinstance(question, str) or not question.strip():
        raise WorkloadError(f'{where}: expected an object with a non-empty "question"')
    image = row.get("image")
    if image is not None and not isinstance(image, str):
        raise WorkloadError(f'{where}: "image" must be a path or a URL')
    if image and not image.startswith(("http://", "https://", "data:")):
        image = image if os.path.isabs(image) else str(path.parent / image)
        if not Path(image).is_file():
            raise WorkloadError(f"{where}: image {image} does not exist")
    answers = row.get("answers", ())
    answers = (answers,) if isinstance(answers, str) else tuple(str(a) for a in answers or ())
    return WorkItem(str(row.get("id") or f"{path.stem}-{line_no}"), question, image or None, answers)


def request_order(items: int, requests: int, seed: int) -> list[int]:
    """``requests`` item indices: shuffled passes over the ``items``, the last one cut short."""
    if items < 1:
        raise WorkloadError("the workload has no questions")
    rng = random.Random(seed)
    order: list[int] = []
    while len(order) < requests:
        batch = list(range(items))
        rng.shuffle(batch)
        order += batch
    return order[:requests]


class RequestFactory:
    """Request bodies for ``/v1/chat/completions``: the question (and its image) as the user's
    message, the mmsr fields (``search_mode``, ``return_trace``) and any ``extra_body``."""

    def __init__(
        self,
        items: Sequence[WorkItem],
        *,
        model: str,
        stream: bool = False,
        search_mode: str | None = "auto",
        image_as: ImageAs = "data",
        max_tokens: int | None = None,
        temperature: float | None = None,
        trace: bool = True,
        extra_body: Mapping[str, Any] | None = None,
    ) -> None:
        self.items = list(items)
        self.model, self.stream, self.search_mode = model, stream, search_mode
        self.image_as = image_as
        self.max_tokens, self.temperature, self.trace = max_tokens, temperature, trace
        self.extra_body = dict(extra_body or {})
        self._urls: dict[int, str] = {}
        if image_as == "url":
            local = [i.id for i in self.items if i.image is not None and not _is_url(i.image)]
            if local:
                raise WorkloadError(
                    f"--image-as url needs image URLs; {len(local)} items have local images "
                    f"(first: {local[0]}): use --image-as data"
                )

    def image_url(self, index: int) -> str | None:
        """The item's image as sent: encoded on first use, then reused."""
        image = self.items[index].image
        if image is None:
            return None
        if index not in self._urls:
            if isinstance(image, bytes):
                self._urls[index] = bytes_data_url(image, where=f"item {self.items[index].id}")
            elif _is_url(image):
                self._urls[index] = image
            else:
                self._urls[index] = file_data_url(image)
        return self._urls[index]

    def body(self, index: int) -> dict[str, Any]:
        item = self.items[index]
        url = self.image_url(index)
        content: Any = item.question
        if url is not None:
            content = [
                {"type": "image_url", "image_url": {"url": url}},
                {"type": "text", "text": item.question},
            ]
        body: dict[str, Any] = {"model": self.model, "messages": [{"role": "user", "content": content}]}
        if self.stream:
            body["stream"] = True
            body["stream_options"] = {"include_usage": True}
        if self.max_tokens is not None:
            body["max_tokens"] = self.max_tokens
        if self.temperature is not None:
            body["temperature"] = self.temperature
        if self.search_mode is not None:
            body["search_mode"] = self.search_mode
        if self.trace:
            body["return_trace"] = True
        body.update(self.extra_body)
        return body


def _is_url(image: str | bytes) -> bool:
    return isinstance(image, str) and image.startswith(("http://", "https://", "data:"))
