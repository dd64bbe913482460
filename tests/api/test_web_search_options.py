"""OpenAI's search-model request shape: ``web_search_options`` is accepted, checked and mapped."""

from __future__ import annotations

from typing import Any

import pytest

from mmsr_serve.api import Settings
from mmsr_serve.api.convert import limits_for
from mmsr_serve.api.schemas import ChatCompletionRequest
from mmsr_serve.backends import ScriptedBackend
from tests.api.conftest import AppClient, R

ASK = [{"role": "user", "content": "Who won?"}]


def limits(options: Any, **extras: Any) -> Any:
    request = ChatCompletionRequest.model_validate({"messages": ASK, "web_search_options": options, **extras})
    return limits_for(request, Settings(model="m", top_k=5, max_text_searches=2))


def test_context_size_maps_onto_the_search_limits() -> None:
    assert (limits({}).top_k, limits({}).max_text_searches) == (5, 2)
    for size in ("medium", "high"):
        assert (
            limits({"search_context_size": size}).top_k,
            limits({"search_context_size": size}).max_text_searches,
        ) == (5, 2)
    low = limits({"search_context_size": "low"})
    assert (low.top_k, low.max_text_searches) == (3, 1)
    mine = limits({"search_context_size": "low"}, search_top_k=4, max_text_searches=2)
    assert (mine.top_k, mine.max_text_searches) == (4, 2)  # the request's own extras decide


async def test_the_openai_search_shape_is_answered(app_client: AppClient) -> None:
    client = app_client(ScriptedBackend([f"{R}<answer>Spain</answer>"]))
    options = {
        "search_context_size": "low",
        "user_location": {"type": "approximate", "approximate": {"country": "ES", "city": "Madrid"}},
    }
    body = {"messages": ASK, "web_search_options": options}
    response = await client.post("/v1/chat/completions", json=body)
    assert response.status_code == 200, response.text
    assert response.json()["choices"][0]["message"]["content"] == "Spain"


@pytest.mark.parametrize(
    ("options", "param"),
    [
        ({"search_context_size": "huge"}, "web_search_options.search_context_size"),
        ({"user_location": {"type": "exact"}}, "web_search_options.user_location.type"),
        ({"colour": "blue"}, "web_search_options.colour"),
        (
            {"user_location": {"type": "approximate", "approximate": {"country": "Spain"}}},
            "web_search_options.user_location.approximate.country",
        ),
    ],
)
async def test_bad_options_are_400_naming_the_field(
    app_client: AppClient, options: dict[str, Any], param: str
) -> None:
    client = app_client(ScriptedBackend([]))
    response = await client.post(
        "/v1/chat/completions", json={"messages": ASK, "web_search_options": options}
    )
    assert response.status_code == 400
    assert response.json()["error"]["param"] == param


async def test_the_users_location_reaches_a_provider_that_takes_one(app_client: AppClient) -> None:
    from mmsr_serve.search.base import SearchResults, TextHit
    from mmsr_serve.search.location import location_of

    class Localised:
        name = "localised"
        takes_location = True

        def __init__(self) -> None:
            self.seen: list[Any] = []

        async def search_text(self, query: str, k: int) -> SearchResults:
            self.seen.append(location_of(self))
            return SearchResults([TextHit("Result", "https://r.example/1", "It says Spain.")], self.name)

    tool = Localised()
    turns = [f"{R}<text_search>who won</text_search>", f"{R}<answer>Spain</answer>"]
    client = app_client(ScriptedBackend(turns * 2), tool)
    where = {"type": "approximate", "approximate": {"country": "ES", "city": "Madrid"}}
    body = {"messages": ASK, "web_search_options": {"user_location": where}}
    assert (await client.post("/v1/chat/completions", json=body)).status_code == 200
    assert (await client.post("/v1/chat/completions", json={"messages": ASK})).status_code == 200
    located, plain = tool.seen
    assert (located.country, located.city) == ("ES", "Madrid") and plain is None
