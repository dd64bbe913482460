"""The release's recorded image searches (pickles keyed by data_id) replay through mmsr's cache:
keyed by the row's image through the parquet file, read safely, in every record shape."""

from __future__ import annotations

import io
import os
import pickle
from pathlib import Path
from typing import Any

import pyarrow as pa  # type: ignore[import-untyped]
import pyarrow.parquet as pq  # type: ignore[import-untyped]
import pytest
from PIL import Image
from typer.testing import CliRunner

from mmsr_serve.cli import app
from mmsr_serve.errors import CacheMissError, ConfigError
from mmsr_serve.images import decode_image
from mmsr_serve.search.base import ImageHit
from mmsr_serve.search.cache import SearchCache
from mmsr_serve.search.config import SearchConfig
from mmsr_serve.search.factory import build_search
from mmsr_serve.search.release_cache import import_release_cache, load_release_pickle, parse_record


def _jpeg(color: tuple[int, int, int], size: tuple[int, int] = (40, 30)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, format="JPEG")
    return buffer.getvalue()


def _opened(data: bytes) -> Image.Image:
    """A PIL image as the release pickled them: a JpegImageFile, decoded."""
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def _data_file(path: Path, rows: dict[str, bytes]) -> Path:
    table = pa.table(
        {
            "data_id": list(rows),
            "images": [[{"bytes": data}] for data in rows.values()],
            "prompt": [[{"role": "user", "content": "Where is this?"}] for _ in rows],
        }
    )
    pq.write_table(table, path)
    return path


def _said(result: Any) -> str:
    """A command's output with the error box's borders and line wrapping taken out."""
    return " ".join(result.output.replace("│", " ").split())


def _tool_return(titles: list[str], images: list[Any]) -> tuple[str, list[Any], dict[str, Any]]:
    # the shape the release's image-search tool returns: text with one title line per image
    text = "[results header]\n"
    text += "".join(f"{i + 1}. image: <marker>\ntitle: {t}\n" for i, t in enumerate(titles))
    return text, images, {"success": True, "num_images": len(images)}


USER_IMAGES = {"fvqa_train_0": _jpeg((200, 10, 10)), "fvqa_train_1": _jpeg((10, 200, 10))}
THUMBS = [_jpeg((90, 90, 200), (16, 16)), _jpeg((200, 200, 20), (12, 20))]


@pytest.mark.parametrize("protocol", [2, 4])
async def test_an_imported_release_pickle_replays_for_the_rows_images(tmp_path: Path, protocol: int) -> None:
    data = _data_file(tmp_path / "fvqa_train.parquet", USER_IMAGES)
    recorded = {
        "fvqa_train_0": _tool_return(["Red Tower - Wikipedia", "A red tower"], [_opened(t) for t in THUMBS]),
        "fvqa_train_1": _tool_return([], []),  # recorded with no results: replayed as none
        "fvqa_test_9": _tool_return(["elsewhere"], [_opened(THUMBS[0])]),  # another split's row
    }
    source = tmp_path / "fvqa_train_image_search_results_cache.pkl"
    source.write_bytes(pickle.dumps(recorded, protocol=protocol))
    cache_file = tmp_path / "cache.sqlite"
    store = SearchCache(cache_file)
    report = import_release_cache(source, [data], store, k=5)
    store.close()
    assert (report.imported, report.hits, report.unknown_ids, report.not_cached) == (2, 2, ["fvqa_test_9"], 0)

    # the path a replaying run takes: the named provider, no API key, nothing called
    tools = build_search(SearchConfig(image=("serpapi-lens",), cache=cache_file, cache_mode="replay"))
    assert tools.image is not None
    results = await tools.image.search_image(decode_image(USER_IMAGES["fvqa_train_0"]), 5)
    assert results.cached and [h.title for h in results.hits] == ["Red Tower - Wikipedia", "A red tower"]
    for hit, original in zip(results.hits, THUMBS, strict=True):
        assert isinstance(hit, ImageHit)
        thumb = hit.thumbnail_image()  # the pixels the release decoded, kept losslessly (PNG)
        assert thumb is not None and thumb.tobytes() == _opened(original).convert("RGB").tobytes()
    empty = await tools.image.search_image(decode_image(USER_IMAGES["fvqa_train_1"]), 5)
    assert empty.cached and empty.hits == []
    with pytest.raises(CacheMissError):  # another image, or the same one at another k, was not recorded
        await tools.image.search_image(decode_image(USER_IMAGES["fvqa_train_0"]), 3)
    await tools.aclose()


def test_every_record_shape_reads_the_same_hits() -> None:
    images = [_opened(t) for t in THUMBS]
    titles = ["First page", "Second page"]
    links = ["https://a.example", "https://b.example"]
    shapes: list[Any] = [
        _tool_return(titles, images),
        {"titles": titles, "images": images, "urls": ["https://a.example", "https://b.example"]},
        {
            "search_results": [
                {"title": t, "thumbnail": im, "link": u}
                for t, im, u in zip(titles, THUMBS, links, strict=True)
            ]
        },
        [{"title": t, "image": im} for t, im in zip(titles, images, strict=True)],
        [(im, t) for t, im in zip(titles, images, strict=True)],
        [(t, im) for t, im in zip(titles, images, strict=True)],
        {"tool_returned_str": _tool_return(titles, images)[0], "tool_returned_images": images},
    ]
    for shape in shapes:
        hits = parse_record(shape)
        assert [h.title for h in hits] == titles, shape
        assert all(h.thumbnail_image() is not None for h in hits)
    urls = parse_record([{"title": "Only a link", "image_url": "https://img.example/x.jpg"}])
    assert urls[0].thumbnail is None and urls[0].url == "https://img.example/x.jpg"


class _Evil:
    def __reduce__(self) -> tuple[Any, ...]:
        return (os.system, ("echo pwned > /dev/null",))


def test_a_pickle_that_would_run_code_is_refused(tmp_path: Path) -> None:
    bad = tmp_path / "cache.pkl"
    bad.write_bytes(pickle.dumps({"fvqa_train_0": [_Evil()]}))
    with pytest.raises(ConfigError, match="not an image or a container"):
        load_release_pickle(bad)
    bad.write_bytes(b"not a pickle")
    with pytest.raises(ConfigError, match="not a release image-search cache"):
        load_release_pickle(bad)


def test_the_command_imports_and_reports(tmp_path: Path) -> None:
    data = _data_file(tmp_path / "fvqa_test.pq", USER_IMAGES)  # the release's own .pq suffix
    source = tmp_path / "release.pkl"
    source.write_bytes(pickle.dumps({"fvqa_train_0": _tool_return(["Red Tower"], [_opened(THUMBS[0])])}))
    cache_file = tmp_path / "c.sqlite"
    runner = CliRunner()

    def run(pickle_file: Path) -> Any:
        return runner.invoke(
            app, ["cache", "import", str(pickle_file), "--data", str(data), "--cache", str(cache_file)]
        )

    out = run(source)
    assert out.exit_code == 0, out.output
    assert "imported 1 serpapi-lens image searches (k=5, 1 hits)" in out.output
    assert "1 images of the data files have no recorded results" in out.output
    assert SearchCache(cache_file).stats().by_provider == {"serpapi-lens/image": 1}

    missing = runner.invoke(app, ["cache", "import", str(source), "--cache", str(cache_file)])
    assert missing.exit_code != 0 and "needs the data file" in _said(missing)
    wrong_split = tmp_path / "other.pkl"
    wrong_split.write_bytes(pickle.dumps({"fvqa_test_1": []}))
    out = run(wrong_split)
    assert out.exit_code != 0 and "is in the data files" in _said(out)
    unreadable = tmp_path / "odd.pkl"
    unreadable.write_bytes(pickle.dumps({"fvqa_train_0": {"score": 3}}))
    out = run(unreadable)
    assert out.exit_code != 0 and "'fvqa_train_0' are not readable" in _said(out)
    assert SearchCache(cache_file).stats().entries == 1  # a failed import wrote nothing
