"""``mmsr cache``: stats, list, export and import; an imported cache replays at zero provider calls."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from mmsr_serve.cli import app
from mmsr_serve.search.base import SearchResults, TextHit
from mmsr_serve.search.cache import SearchCache, cached


class Counting:
    name = "serpapi"

    def __init__(self) -> None:
        self.calls = 0

    async def search_text(self, query: str, k: int) -> SearchResults:
        self.calls += 1
        return SearchResults([TextHit(f"About {query}", "https://x.example", "text")], self.name)


async def test_export_import_then_replay(tmp_path: Path) -> None:
    recorded = tmp_path / "recorded.sqlite"
    provider = Counting()
    search = cached(provider, recorded)
    for query in ("glass heron", "brass tower"):
        await search.search_text(query, 5)
    search.close()
    runner = CliRunner()
    stats = runner.invoke(app, ["cache", "stats", "--cache", str(recorded), "--json"])
    assert stats.exit_code == 0, stats.output
    assert json.loads(stats.output)["entries"] == 2 and json.loads(stats.output)["serpapi/text"] == 2
    listed = runner.invoke(app, ["cache", "list", "--cache", str(recorded), "-n", "1"])
    assert listed.exit_code == 0 and "serpapi/text  k=5  hits=1  brass tower" in listed.output
    assert "glass heron" not in listed.output
    export = tmp_path / "searches.jsonl"
    out = runner.invoke(app, ["cache", "export", str(export), "--cache", str(recorded)])
    assert out.exit_code == 0 and "exported 2 entries" in out.output
    fresh = tmp_path / "elsewhere" / "cache.sqlite"
    imported = runner.invoke(app, ["cache", "import", str(export)], env={"MMSR_SEARCH_CACHE": str(fresh)})
    assert imported.exit_code == 0, imported.output
    assert "imported 2 entries" in imported.output
    replay_provider = Counting()
    replay = cached(replay_provider, fresh, mode="replay")
    again = await replay.search_text("  Glass HERON ", 5)
    assert again.cached and again.hits[0].title == "About glass heron" and replay_provider.calls == 0
    replay.close()
    assert SearchCache(fresh).stats().entries == 2


def test_a_cache_not_made_yet_reads_as_empty(tmp_path: Path) -> None:
    # a fresh install has no cache file: every read command says so and succeeds, creating nothing
    runner = CliRunner()
    none = tmp_path / "none.sqlite"
    stats = runner.invoke(app, ["cache", "stats", "--cache", str(none)])
    assert stats.exit_code == 0 and "0 entries (the cache is empty" in stats.output
    assert str(none) in stats.output
    as_json = runner.invoke(app, ["cache", "stats", "--json"], env={"MMSR_SEARCH_CACHE": str(none)})
    assert as_json.exit_code == 0 and json.loads(as_json.output) == {"file": str(none), "entries": 0}
    listed = runner.invoke(app, ["cache", "list", "--cache", str(none)])
    assert listed.exit_code == 0 and "the cache is empty" in listed.output
    out = tmp_path / "out.jsonl"
    exported = runner.invoke(app, ["cache", "export", str(out), "--cache", str(none)])
    assert exported.exit_code == 0 and "exported 0 entries" in exported.output and out.read_text() == ""
    assert not none.exists()


def test_bad_import_files_are_clear_errors(tmp_path: Path) -> None:
    runner = CliRunner()
    bad = tmp_path / "bad.jsonl"
    bad.write_text("{not json}\n")
    result = runner.invoke(app, ["cache", "import", str(bad), "--cache", str(tmp_path / "c.sqlite")])
    assert result.exit_code != 0 and "line 1" in result.output
