"""The persistent search cache: keys, modes, single flight, errors, export/import."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from PIL import Image

from mmsr_serve.errors import CacheMissError, ConfigError, SearchError
from mmsr_serve.images import InputImage, encode_image, load_image
from mmsr_serve.search.base import ImageHit, ImageSearchTool, SearchResults, TextHit, TextSearchTool
from mmsr_serve.search.cache import (
    CachedImageSearch,
    CachedSearch,
    CachedTextSearch,
    SearchCache,
    cached,
)
from mmsr_serve.search.local import LocalIndex


class FakeProvider:
    """Both tools; counts calls; can be slowed down or made to fail."""

    name = "fake"

    def __init__(self, *, delay: float = 0.0, fail: bool = False) -> None:
        self.delay, self.fail = delay, fail
        self.calls: list[tuple[str, str, int]] = []
        self.version = 1

    async def _answer(self, kind: str, query: str, k: int) -> None:
        self.calls.append((kind, query, k))
        await asyncio.sleep(self.delay)
        if self.fail:
            raise SearchError("provider down")

    async def search_text(self, query: str, k: int) -> SearchResults:
        await self._answer("text", query, k)
        hits = [
            TextHit(f"{query} #{i} v{self.version}", f"https://t.example/{i}", "Some text.", 1 / (i + 1))
            for i in range(min(k, 3))
        ]
        return SearchResults(list(hits), self.name)

    async def search_image(self, image: InputImage, k: int) -> SearchResults:
        await self._answer("image", image.sha256, k)
        thumb = encode_image(image.image.resize((8, 8)), "JPEG")
        hits = [
            ImageHit("Pic", "https://i.example/1", thumb, 0.9),
            ImageHit("No thumb", "https://i.example/2"),
        ]
        return SearchResults(list(hits), self.name)


class TextOnly:
    name = "text-only"

    async def search_text(self, query: str, k: int) -> SearchResults:
        return SearchResults([TextHit(query, "https://x.example", "x")], self.name)


async def _image(colour: tuple[int, int, int], url: str | None = None) -> InputImage:
    img = await load_image(encode_image(Image.new("RGB", (16, 16), colour)))
    return InputImage(img.image, img.data, img.sha256, url)


async def test_miss_then_hit_with_normalized_text_keys(tmp_path: Path) -> None:
    provider = FakeProvider()
    search = cached(provider, tmp_path / "c.sqlite")
    first = await search.search_text("Glass  Heron", 3)
    again = await search.search_text("  glass heron\n", 3)
    assert not first.cached and again.cached
    assert again.hits == first.hits and again.provider == "fake"
    assert len(provider.calls) == 1 and provider.calls[0] == ("text", "Glass  Heron", 3)  # query as written
    await search.search_text("glass heron", 4)  # another k is another key
    assert len(provider.calls) == 2
    stats = search.stats()
    assert (stats.entries, stats.hits, stats.misses, stats.provider_calls) == (2, 1, 2, 2)
    assert stats.by_provider == {"fake/text": 2}


async def test_images_are_keyed_by_content_not_url(tmp_path: Path) -> None:
    provider = FakeProvider()
    search = cached(provider, tmp_path / "c.sqlite")
    first = await search.search_image(await _image((200, 0, 0), "https://a.example/x.png"), 5)
    same = await search.search_image(await _image((200, 0, 0), "https://b.example/y.png"), 5)
    other = await search.search_image(await _image((0, 200, 0), "https://a.example/x.png"), 5)
    assert (first.cached, same.cached, other.cached) == (False, True, False)
    assert same.hits == first.hits  # thumbnails (bytes) and scores survive the JSON round trip
    assert isinstance(same.hits[0], ImageHit) and same.hits[0].thumbnail_image() is not None
    assert len(provider.calls) == 2


async def test_the_cache_persists_across_instances(tmp_path: Path) -> None:
    await cached(FakeProvider(), tmp_path / "c.sqlite").search_text("q", 2)
    provider = FakeProvider()
    assert (await cached(provider, tmp_path / "c.sqlite").search_text("Q", 2)).cached
    assert provider.calls == []


async def test_identical_concurrent_calls_share_one_provider_call(tmp_path: Path) -> None:
    provider = FakeProvider(delay=0.05)
    search = cached(provider, tmp_path / "c.sqlite")
    image = await _image((1, 2, 3))
    texts = await asyncio.gather(*[search.search_text("same query", 5) for _ in range(10)])
    images = await asyncio.gather(*[search.search_image(image, 5) for _ in range(10)])
    assert len(provider.calls) == 2
    assert all(r.hits == texts[0].hits for r in texts) and all(r.hits == images[0].hits for r in images)
    assert search.stats().joined == 18


async def test_a_cancelled_caller_does_not_cancel_the_shared_call(tmp_path: Path) -> None:
    provider = FakeProvider(delay=0.05)
    search = cached(provider, tmp_path / "c.sqlite")
    quitter = asyncio.create_task(search.search_text("q", 1))
    stayer = asyncio.create_task(search.search_text("q", 1))
    await asyncio.sleep(0.01)
    quitter.cancel()
    assert (await stayer).hits and quitter.cancelled()
    assert len(provider.calls) == 1 and search.stats().entries == 1


async def test_replay_serves_only_recorded_calls(tmp_path: Path) -> None:
    path = tmp_path / "c.sqlite"
    await cached(FakeProvider(), path).search_text("recorded", 5)
    provider = FakeProvider()
    replay = cached(provider, path, mode="replay")
    assert (await replay.search_text("RECORDED", 5)).cached
    with pytest.raises(CacheMissError):
        await replay.search_text("never seen", 5)
    with pytest.raises(CacheMissError):
        await replay.search_image(await _image((9, 9, 9)), 5)
    assert provider.calls == []


async def test_refresh_calls_the_provider_and_overwrites(tmp_path: Path) -> None:
    path = tmp_path / "c.sqlite"
    provider = FakeProvider()
    await cached(provider, path).search_text("q", 1)
    provider.version = 2
    refreshed = await cached(provider, path, mode="refresh").search_text("q", 1)
    assert not refreshed.cached and len(provider.calls) == 2
    assert (await cached(provider, path).search_text("q", 1)).hits[0].title.endswith("v2")


async def test_failures_are_not_cached(tmp_path: Path) -> None:
    provider = FakeProvider(fail=True)
    search = cached(provider, tmp_path / "c.sqlite")
    results = await asyncio.gather(*[search.search_text("q", 1) for _ in range(3)], return_exceptions=True)
    assert all(isinstance(r, SearchError) for r in results) and len(provider.calls) == 1
    provider.fail = False
    assert not (await search.search_text("q", 1)).cached
    assert len(provider.calls) == 2
    assert search.stats().errors == 1


async def test_export_import_round_trip(tmp_path: Path) -> None:
    source = cached(FakeProvider(), tmp_path / "a.sqlite")
    image = await _image((5, 50, 150))
    originals = [await source.search_text("one", 2), await source.search_image(image, 5)]
    assert source.export_jsonl(tmp_path / "dump.jsonl") == 2
    rows = [json.loads(line) for line in (tmp_path / "dump.jsonl").read_text().splitlines()]
    assert {r["kind"] for r in rows} == {"image", "text"}

    target = SearchCache(tmp_path / "b.sqlite")
    assert target.import_jsonl(tmp_path / "dump.jsonl") == 2
    assert [(e.provider, e.kind, e.query, e.k) for e in target.entries()] == [
        (e.provider, e.kind, e.query, e.k) for e in source.entries()
    ]
    replay = cached(FakeProvider(), target, mode="replay")
    assert (await replay.search_text("one", 2)).hits == originals[0].hits
    assert (await replay.search_image(image, 5)).hits == originals[1].hits
    replay.close()  # a shared store stays open for its owner
    assert target.stats().entries == 2


def test_import_rejects_malformed_lines(tmp_path: Path) -> None:
    dump = tmp_path / "dump.jsonl"
    dump.write_text('\n{"provider": "p", "kind": "text"}\n')
    with pytest.raises(ConfigError, match="line 2"):
        SearchCache(tmp_path / "c.sqlite").import_jsonl(dump)


def test_the_factory_keeps_exactly_the_tools_of_the_provider(tmp_path: Path, corpus_dir: Path) -> None:
    text_only = cached(TextOnly(), tmp_path / "c.sqlite")
    assert type(text_only) is CachedTextSearch and text_only.name == "text-only"
    assert isinstance(text_only, TextSearchTool) and not isinstance(text_only, ImageSearchTool)
    both = cached(LocalIndex(corpus_dir), tmp_path / "c.sqlite")
    assert (
        type(both) is CachedSearch and isinstance(both, ImageSearchTool) and isinstance(both, TextSearchTool)
    )
    assert isinstance(both, CachedImageSearch)
    with pytest.raises(TypeError):
        cached(object(), tmp_path / "c.sqlite")  # type: ignore[call-overload]
    with pytest.raises(ValueError):
        CachedSearch(FakeProvider(), tmp_path / "c.sqlite", mode="sometimes")  # type: ignore[arg-type]


async def test_around_the_local_index(tmp_path: Path, local_index: LocalIndex) -> None:
    search = cached(local_index, tmp_path / "c.sqlite")
    first = await search.search_text("designed metres", 3)
    second = await search.search_text("Designed  Metres", 3)
    assert second.cached and second.hits == first.hits and second.provider == "local"


async def test_a_localised_providers_answers_are_kept_per_country(tmp_path: Path) -> None:
    from mmsr_serve.search.base import SearchResults, TextHit
    from mmsr_serve.search.location import SearchLocation, location_of, search_location

    class Localised:
        name = "localised"
        takes_location = True

        def __init__(self) -> None:
            self.calls: list[str | None] = []

        async def search_text(self, query: str, k: int) -> SearchResults:
            where = location_of(self)
            self.calls.append(where.country if where else None)
            return SearchResults([TextHit("t", f"https://x.example/{self.calls[-1]}", "s")], self.name)

    class Everywhere(Localised):
        name = "everywhere"
        takes_location = False

    for provider, expected in ((Localised(), ["FR", "US", None]), (Everywhere(), [None])):
        tool = cached(provider, tmp_path / f"{provider.name}.sqlite")
        for country in ("FR", "US", None, "FR"):
            with search_location(SearchLocation(country=country) if country else None):
                await tool.search_text("heron", 3)
        assert provider.calls == expected  # one call per country for the one, one for all for the other
        tool.close()
