"""A web provider is one small module (an :class:`HttpProvider` subclass) plus one registry line:
the config validation, the environment variables, the factory and both serving and training then
know it. The provider here speaks the Brave stand-in's API under another name."""

from __future__ import annotations

import pytest

from mmsr_serve.config import AgentConfig
from mmsr_serve.errors import ConfigError
from mmsr_serve.search import PROVIDERS, HttpProvider, Provider, SearchResults, TextHit
from mmsr_serve.search.config import choices, provider_env
from tests.search.standins import KEYS, StandIn


class EchoSearch(HttpProvider):
    name = "echo"
    key_env = "ECHO_API_KEY"

    async def search_text(self, query: str, k: int) -> SearchResults:
        params = {**self.options, "q": query, "count": k}
        headers = {"X-Subscription-Token": self.require_key()}
        data = await self.request("GET", "/res/v1/web/search", params=params, headers=headers)
        hits = [TextHit(r["title"], r["url"], r["description"]) for r in data["web"]["results"]]
        return SearchResults(hits[:k], self.name)


@pytest.fixture
def echo_registered(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(PROVIDERS, "echo", Provider("echo", "text", f"{__name__}:EchoSearch"))


@pytest.mark.usefixtures("echo_registered")
async def test_a_registered_provider_is_configured_and_built_like_the_others(standin: StandIn) -> None:
    env = {"ECHO_API_KEY": KEYS["brave"], "ECHO_BASE_URL": standin.base}
    assert "echo" in choices("text") and provider_env(env)["echo"]["base_url"] == standin.base
    file = {
        "text_search": ["echo"],
        "page_reader": "none",
        "providers": {"echo": {"options": {"country": "DE"}}},
    }
    config = AgentConfig.from_sources(file, env=env, search_cache="off")
    tools = config.build_search()
    assert tools.text is not None
    results = await tools.text.search_text("glass heron", 2)
    await tools.aclose()
    assert results.provider == "echo" and len(results.hits) == 2
    assert standin.seen("brave")[0].params["country"] == "DE"
    assert repr(tools.text) == f"EchoSearch(base_url={standin.base!r})"  # the key never shows


@pytest.mark.usefixtures("echo_registered")
def test_a_keyed_provider_without_its_key_names_the_variable() -> None:
    with pytest.raises(ConfigError, match="ECHO_API_KEY"):
        AgentConfig.load(env={}, text_search=["echo"], search_cache="off").build_search()


def test_an_unregistered_provider_is_refused_with_the_choices() -> None:
    with pytest.raises(ConfigError, match=r"unknown provider 'echo'.*brave"):
        AgentConfig.load(env={}, text_search=["echo"])
