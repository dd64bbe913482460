"""From settings (flags, config file, provider environment variables) to search tools."""

from __future__ import annotations

from pathlib import Path

import pytest

from mmsr_serve.api.settings import Settings
from mmsr_serve.errors import ConfigError
from mmsr_serve.search.config import ProviderConfig, SearchConfig, default_cache_path, provider_env
from mmsr_serve.search.factory import build_search

KEY = "serp-factory-SECRET-0123456789"


def test_provider_keys_and_base_urls_from_file_and_environment(tmp_path: Path) -> None:
    config = tmp_path / "mmsr.yaml"
    config.write_text(
        "text-search: serpapi,brave\n"
        "providers:\n"
        "  serpapi: {api_key: from-file-key-123, options: {hl: fr}}\n"
        "  brave: {api_key: brave-file-key-123, base_url: http://brave.file}\n"
    )
    env = {
        "SERPAPI_API_KEY": KEY,
        "SERPAPI_BASE_URL": "http://proxy.example/serp",
        "JINA_API_KEY": "jina-k-123",
    }
    settings = Settings.load(config, env=env)
    search = settings.search_config()
    assert search.text == ("serpapi", "brave")
    serp = search.provider("serpapi")
    assert (serp.api_key, serp.base_url, dict(serp.options)) == (
        KEY,
        "http://proxy.example/serp",
        {"hl": "fr"},
    )
    assert search.provider("serpapi-lens") == serp  # Lens shares SerpAPI's section
    assert search.provider("brave").base_url == "http://brave.file"
    assert search.provider("jina").api_key == "jina-k-123"
    for text in (repr(settings), str(settings), repr(search), settings.model_dump_json()):
        assert KEY not in text and "brave-file-key-123" not in text
    assert provider_env({"TAVILY_API_KEY": " t-1 ", "SEARXNG_BASE_URL": "http://sx"}) == {
        "tavily": {"api_key": "t-1"},
        "searxng": {"base_url": "http://sx"},
    }


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"text_search": "serpapi,bing"}, "unknown provider 'bing'"),
        ({"image_search": "serpapi"}, "unknown provider 'serpapi'"),
        ({"providers": {"bing": {}}}, "unknown provider sections"),
        ({"search_prices": {"serpapi": {"per_search": 1}}}, "per_call"),
        ({"page_reader": "browser"}, "page_reader"),
    ],
)
def test_bad_search_settings(overrides: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Settings.load(env={}, **overrides)


def test_cache_defaults(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert default_cache_path() == tmp_path / "mmsr" / "search-cache.sqlite"
    web = Settings(model="m", text_search=["duckduckgo"])
    assert web.search_config().cache == tmp_path / "mmsr" / "search-cache.sqlite"
    assert Settings(model="m", text_search=["duckduckgo"], search_cache="off").search_config().cache is None
    assert Settings.load(env={"MMSR_SEARCH_CACHE": "OFF"}).search_cache == "off"
    local = Settings(model="m", index=tmp_path).search_config()
    assert (local.image, local.text, local.cache) == (("local",), ("local",), None)


async def test_chains_pipelines_and_caches(tmp_path: Path, corpus_dir: Path) -> None:
    config = SearchConfig(
        image=("serpapi-lens", "local"),
        text=("serpapi", "duckduckgo"),
        index=corpus_dir,
        cache=tmp_path / "cache.sqlite",
        providers={"serpapi": ProviderConfig(KEY)},
        public_base_url="https://gw.example",
    )
    tools = build_search(config)
    assert tools.image is not None and tools.text is not None
    assert tools.image.name == "serpapi-lens,local"
    assert tools.text.name == "serpapi+local+bm25,duckduckgo+local+bm25"
    assert tools.publisher is not None and tools.local is not None
    assert KEY not in repr(tools.text) + repr(tools.image)
    snippets = build_search(SearchConfig(text=("serpapi",), reader="none", providers=config.providers))
    assert snippets.text is not None and snippets.text.name == "serpapi"
    await tools.aclose()
    await snippets.aclose()


def test_keys_are_required_except_in_replay(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="SERPAPI_API_KEY"):
        build_search(SearchConfig(image=("serpapi-lens",)))
    with pytest.raises(ConfigError, match="BRAVE_API_KEY"):
        build_search(SearchConfig(text=("brave",)))
    with pytest.raises(ConfigError, match="SEARXNG_BASE_URL"):
        build_search(SearchConfig(text=("searxng",)))
    with pytest.raises(ConfigError, match="--index"):
        build_search(SearchConfig(text=("local",)))
    with pytest.raises(ConfigError, match="both --summarizer-base-url and --summarizer-model"):
        build_search(SearchConfig(text=("duckduckgo",), summarizer_model="m"))
    replay = build_search(SearchConfig(text=("tavily",), cache=tmp_path / "c.sqlite", cache_mode="replay"))
    assert any("tavily: no API key" in w for w in replay.warnings)


def test_startup_warnings(tmp_path: Path) -> None:
    providers = {"serpapi": ProviderConfig(KEY)}
    no_url = build_search(SearchConfig(image=("serpapi-lens",), providers=providers)).warnings
    assert any("without --public-base-url" in w for w in no_url)
    assert any("without a cache" in w for w in no_url)
    local_url = SearchConfig(
        image=("serpapi-lens",), providers=providers, public_base_url="http://127.0.0.1:8080"
    )
    assert any("not a public address" in w for w in build_search(local_url).warnings)
    text = SearchConfig(text=("serpapi",), providers=providers, prices={"brave": 0.005}, cache=tmp_path / "c")
    warnings = build_search(text).warnings
    assert any("summarized by extracting" in w for w in warnings)
    assert any("no price for serpapi" in w for w in warnings)
    good = SearchConfig(
        image=("serpapi-lens",),
        text=("serpapi",),
        providers=providers,
        public_base_url="https://gw.example",
        cache=tmp_path / "c",
        summarizer_base_url="http://llm:8000/v1",
        summarizer_model="qwen",
    )
    assert build_search(good).warnings == []


async def test_warm_loads_the_index_and_the_page_readers_extractor(
    tmp_path: Path, corpus_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # What the first search would load happens at start-up instead (the server calls warm()).
    from mmsr_serve.search import _image_index, reader

    warmed: list[str] = []
    real_extract, real_hash = reader.extract_main_text, _image_index.signatures
    monkeypatch.setattr(reader, "extract_main_text", lambda *a: warmed.append("reader") or real_extract(*a))
    monkeypatch.setattr(_image_index, "signatures", lambda *a: warmed.append("hash") or real_hash(*a))
    providers = {"searxng": ProviderConfig(base_url="http://127.0.0.1:9")}  # never called
    config = SearchConfig(
        image=("local",), text=("searxng",), index=corpus_dir, cache=None, providers=providers
    )
    tools = build_search(config)
    tools.warm()
    assert warmed.count("reader") == 1 and "hash" in warmed
    assert tools.local is not None and tools.local.index_path.exists()
    await tools.aclose()
