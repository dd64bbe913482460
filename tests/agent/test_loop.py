import asyncio
from dataclasses import dataclass, field

import pytest
from PIL import Image

from mmsr_serve import Limits, SearchAgent
from mmsr_serve.agent.events import (
    Finished,
    SearchFinished,
    SearchStarted,
    TextDelta,
    TurnFinished,
    TurnStarted,
)
from mmsr_serve.agent.parser import STOP_STRINGS
from mmsr_serve.backends import ImagePart, Message, ScriptedBackend, TextPart
from mmsr_serve.errors import BackendError, ImageError, InvalidInputError, SearchError
from mmsr_serve.images import InputImage, encode_image
from mmsr_serve.search.base import ImageHit, SearchResults, TextHit

R = "<reason>thinking</reason>"
IMG = f"{R}<search><img></search>"


def thumb(color: str) -> bytes:
    return encode_image(Image.new("RGB", (32, 24), color), "JPEG")


@dataclass
class FakeImageSearch:
    hits: list[ImageHit] = field(default_factory=list)
    error: Exception | None = None
    delay: float = 0.0
    name: str = "fake-image"
    calls: list[tuple[InputImage, int]] = field(default_factory=list)

    async def search_image(self, image: InputImage, k: int) -> SearchResults:
        self.calls.append((image, k))
        await asyncio.sleep(self.delay)
        if self.error:
            raise self.error
        return SearchResults(list(self.hits), self.name)


@dataclass
class FakeTextSearch:
    hits: list[TextHit] = field(default_factory=list)
    error: Exception | None = None
    name: str = "fake-text"
    calls: list[tuple[str, int]] = field(default_factory=list)

    async def search_text(self, query: str, k: int) -> SearchResults:
        self.calls.append((query, k))
        if self.error:
            raise self.error
        return SearchResults(list(self.hits), self.name, cached=True)


def image_hits(n: int = 2) -> list[ImageHit]:
    return [ImageHit(f"Page {i}", f"https://img.example/{i}", thumb("red")) for i in range(n)]


def text_hits(n: int = 2) -> list[TextHit]:
    return [TextHit(f"Doc {i}", f"https://text.example/{i}", f"Fact number {i}.") for i in range(n)]


def photo() -> Image.Image:
    return Image.new("RGB", (64, 48), "blue")


async def test_direct_answer() -> None:
    backend = ScriptedBackend([f"{R}<answer>Paris</answer>"])
    result = await SearchAgent(backend, image_search=FakeImageSearch()).run("Capital of France?", photo())
    assert (result.answer, result.finish_reason) == ("Paris", "stop")
    assert result.search_calls == {"image": 0, "text": 0}
    assert result.citations == []
    assert len(backend.requests) == 1
    request = backend.requests[0]
    assert request.stop == STOP_STRINGS
    assert request.max_tokens == 2048
    first = request.messages[0]
    assert first.role == "user" and len(first.images) == 1
    assert first.text.rstrip().endswith("Question: Capital of France?")
    assert result.usage.completion_tokens == len(f"{R}<answer>Paris</answer>".split())
    assert result.reasoning == "thinking"


async def test_image_then_text_then_answer() -> None:
    images, texts = FakeImageSearch(image_hits(7)), FakeTextSearch(text_hits(2))
    backend = ScriptedBackend(
        [IMG, f"{R}<text_search>page 0 facts</text_search>", f"{R}<answer>Fact 0</answer>"]
    )
    agent = SearchAgent(backend, image_search=images, text_search=texts)
    result = await agent.run("What is this?", photo())

    assert (result.answer, result.finish_reason) == ("Fact 0", "stop")
    assert result.search_calls == {"image": 1, "text": 1}
    assert [t.action for t in result.turns] == ["image_search", "text_search", "answer"]
    assert images.calls[0][1] == 5 and texts.calls == [("page 0 facts", 5)]
    image_search, text_search = result.searches
    assert len(image_search.hits) == 5  # top-k of the 7 returned
    assert text_search.cached and text_search.provider == "fake-text"
    assert result.citations[:2] == ["https://img.example/0", "https://img.example/1"]
    assert result.citations[-2:] == ["https://text.example/0", "https://text.example/1"]

    after_image = backend.requests[1].messages[-1]
    assert after_image.role == "user"
    assert len(after_image.images) == 5
    kinds = [type(p) for p in after_image.content]
    assert kinds[:3] == [TextPart, ImagePart, TextPart]  # wrapper, thumbnail, its title...
    assert "1. Title: Page 0" in after_image.text and "<information>" in after_image.text
    assert "What is this?" in after_image.text.split("</information>")[1]
    after_text = backend.requests[2].messages[-1]
    assert after_text.images == []
    assert "1. Doc 0 (https://text.example/0)\nFact number 0." in after_text.text
    # the model's own turns are in the conversation as assistant messages
    assert [m.role for m in backend.requests[2].messages] == [
        "user",
        "assistant",
        "user",
        "assistant",
        "user",
    ]


async def test_failed_search_is_told_to_the_model_and_the_run_goes_on() -> None:
    texts = FakeTextSearch(error=SearchError("provider answered 503"))
    backend = ScriptedBackend([f"{R}<text_search>q</text_search>", f"{R}<answer>unknown</answer>"])
    result = await SearchAgent(backend, text_search=texts).run("Q?")
    assert result.finish_reason == "stop"
    assert result.searches[0].error == "provider answered 503"
    assert result.search_calls == {"image": 0, "text": 1}
    assert "The web search failed: provider answered 503" in backend.requests[1].messages[-1].text


async def test_search_timeout_becomes_a_tool_error() -> None:
    images = FakeImageSearch(image_hits(), delay=5)
    backend = ScriptedBackend([IMG, f"{R}<answer>x</answer>"])
    agent = SearchAgent(backend, image_search=images, limits=Limits(search_timeout_s=0.05))
    result = await asyncio.wait_for(agent.run("Q?", photo()), 2)
    assert result.searches[0].error == "no answer within 0.05 s"
    assert "failed: no answer within 0.05 s" in backend.requests[1].messages[-1].text


async def test_empty_results_are_reported() -> None:
    backend = ScriptedBackend([IMG, f"{R}<answer>x</answer>"])
    result = await SearchAgent(backend, image_search=FakeImageSearch([])).run("Q?", photo())
    assert result.searches[0].hits == []
    assert "The image search returned no results." in backend.requests[1].messages[-1].text


async def test_without_image_image_search_is_not_offered_and_refused() -> None:
    images = FakeImageSearch(image_hits())
    backend = ScriptedBackend([IMG, f"{R}<answer>x</answer>"])
    result = await SearchAgent(backend, image_search=images, text_search=FakeTextSearch()).run("Q?")
    first = backend.requests[0].messages[0]
    assert first.images == [] and "<search><img></search>" not in first.text
    assert images.calls == []
    assert result.search_calls == {"image": 0, "text": 0}
    assert "You cannot run another image search" in backend.requests[1].messages[-1].text
    assert result.answer == "x"


async def test_search_over_its_limit_gets_a_corrective_turn() -> None:
    images = FakeImageSearch(image_hits())
    backend = ScriptedBackend([IMG, IMG, f"{R}<answer>x</answer>"])
    result = await SearchAgent(backend, image_search=images).run("Q?", photo())
    assert len(images.calls) == 1
    assert result.search_calls["image"] == 1
    assert "You cannot run another image search" in backend.requests[2].messages[-1].text
    assert (result.answer, result.finish_reason) == ("x", "stop")


async def test_search_over_its_limit_ends_the_run_without_recovery() -> None:
    images = FakeImageSearch(image_hits())
    backend = ScriptedBackend([IMG, IMG])
    result = await SearchAgent(backend, image_search=images, limits=Limits(recover=False)).run("Q?", photo())
    assert (result.answer, result.finish_reason) == (None, "invalid")
    assert len(result.turns) == 2 and backend.remaining == 0


async def test_search_in_the_last_turn_ends_with_max_turns() -> None:
    texts = FakeTextSearch(text_hits())
    backend = ScriptedBackend([f"{R}<text_search>a</text_search>", f"{R}<text_search>b</text_search>"])
    result = await SearchAgent(backend, text_search=texts, limits=Limits(max_turns=2)).run("Q?")
    assert (result.answer, result.finish_reason) == (None, "max_turns")
    assert [q for q, _ in texts.calls] == ["a"]  # the last-turn search was not run


async def test_malformed_turn_gets_a_format_reminder() -> None:
    backend = ScriptedBackend(["I believe it is Paris.", f"{R}<answer>Paris</answer>"])
    result = await SearchAgent(backend).run("Q?")
    assert (result.answer, result.finish_reason) == ("Paris", "stop")
    assert "did not end with an action" in backend.requests[1].messages[-1].text
    assert result.turns[0].parsed.error == "the turn does not end with an action"


async def test_malformed_turns_until_the_end_give_max_turns() -> None:
    backend = ScriptedBackend(["no", "still no", "never"])
    result = await SearchAgent(backend).run("Q?")
    assert (result.answer, result.finish_reason) == (None, "max_turns")
    assert len(result.turns) == 3


async def test_malformed_turn_without_recovery_is_invalid() -> None:
    backend = ScriptedBackend(["no action"])
    result = await SearchAgent(backend, limits=Limits(recover=False)).run("Q?")
    assert (result.answer, result.finish_reason) == (None, "invalid")


async def test_turn_cut_by_its_token_limit_ends_with_length() -> None:
    backend = ScriptedBackend([f"{R} " + "word " * 50 + "<answer>x</answer>"])
    result = await SearchAgent(backend, limits=Limits(max_new_tokens=10)).run("Q?")
    assert (result.answer, result.finish_reason) == (None, "length")
    assert backend.requests[0].max_tokens == 10


async def test_conversation_budget_bounds_the_next_turn_and_ends_with_length() -> None:
    texts = FakeTextSearch([TextHit("Doc", "https://d.example", "lots of words " * 40)])
    backend = ScriptedBackend([f"{R}<text_search>q</text_search>", f"{R}<answer>x</answer>"])
    limits = Limits(max_total_tokens=60, max_new_tokens=50)
    result = await SearchAgent(backend, text_search=texts, limits=limits).run("Q?")
    # after the first turn and ~120 words of results, no budget is left for a second turn
    assert result.finish_reason == "length"
    assert len(backend.requests) == 1


async def test_stripped_stop_string_is_restored() -> None:
    backend = ScriptedBackend([f"{R}<answer>Paris"])
    result = await SearchAgent(backend).run("Q?")
    assert (result.answer, result.finish_reason) == ("Paris", "stop")
    assert result.turns[0].text.endswith("<answer>Paris</answer>")
    assert result.messages[-1].text.endswith("</answer>")


async def test_history_is_kept_before_the_protocol_turn() -> None:
    backend = ScriptedBackend([f"{R}<answer>x</answer>"])
    history = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi"},
        Message.of("assistant", "Hello!"),
    ]
    await SearchAgent(backend).run("Q?", history=history)
    messages = backend.requests[0].messages
    assert [m.role for m in messages] == ["system", "user", "assistant", "user"]
    assert messages[1].text == "Hi" and "Question: Q?" in messages[3].text


async def test_bad_history_and_empty_question_are_invalid_input() -> None:
    agent = SearchAgent(ScriptedBackend())
    with pytest.raises(InvalidInputError, match=r"history\[0\]"):
        await agent.run("Q?", history=[{"role": "tool", "content": "x"}])
    with pytest.raises(InvalidInputError, match="empty"):
        await agent.run("  ")


async def test_malformed_image_is_an_image_error_and_nothing_is_generated() -> None:
    backend = ScriptedBackend([f"{R}<answer>x</answer>"])
    with pytest.raises(ImageError, match="cannot decode image"):
        await SearchAgent(backend).run("Q?", b"definitely not an image")
    assert backend.requests == []


async def test_backend_errors_propagate() -> None:
    backend = ScriptedBackend([BackendError("vLLM is down")])
    with pytest.raises(BackendError, match="vLLM is down"):
        await SearchAgent(backend).run("Q?")


async def test_events_come_in_order() -> None:
    backend = ScriptedBackend([IMG, f"{R}<answer>Page 0</answer>"])
    events = [
        e
        async for e in SearchAgent(backend, image_search=FakeImageSearch(image_hits())).stream("Q?", photo())
    ]
    kinds = [type(e).__name__ for e in events]
    assert kinds[0] == "TurnStarted" and kinds[-1] == "Finished"
    assert kinds.index("TurnFinished") < kinds.index("SearchStarted") < kinds.index("SearchFinished")
    turn1 = "".join(e.text for e in events if isinstance(e, TextDelta) and e.turn == 1)
    assert turn1 == IMG
    assert sum(isinstance(e, TurnStarted) for e in events) == 2
    assert sum(isinstance(e, TurnFinished) for e in events) == 2
    started = next(e for e in events if isinstance(e, SearchStarted))
    assert (started.kind, started.query) == ("image", None)
    assert next(e for e in events if isinstance(e, SearchFinished)).record.hits
    assert isinstance(events[-1], Finished) and events[-1].result.answer == "Page 0"


async def test_sampling_and_limit_overrides_reach_the_backend() -> None:
    from mmsr_serve.agent import Sampling

    backend = ScriptedBackend([f"{R}<answer>x</answer>"])
    agent = SearchAgent(backend)
    await agent.run(
        "Q?",
        limits=agent.limits.with_overrides(max_new_tokens=77, top_k=None),
        sampling=Sampling(temperature=0.7, top_p=0.9, seed=3),
    )
    request = backend.requests[0]
    assert (request.max_tokens, request.temperature, request.top_p, request.seed) == (77, 0.7, 0.9, 3)


async def test_mode_off_is_one_plain_turn_without_the_protocol() -> None:
    backend = ScriptedBackend(["It is the Eiffel Tower, built in 1889."])
    images = FakeImageSearch(image_hits())
    result = await SearchAgent(backend, image_search=images).run("What is it?", photo(), mode="off")
    assert (result.answer, result.finish_reason) == ("It is the Eiffel Tower, built in 1889.", "stop")
    request = backend.requests[0]
    assert request.stop == ()
    (message,) = request.messages
    assert message.text == "What is it?" and len(message.images) == 1
    assert "<reason>" not in message.text
    assert result.search_calls == {"image": 0, "text": 0} and images.calls == []


async def test_mode_off_stops_on_the_callers_stop_sequences() -> None:
    backend = ScriptedBackend(["It is the Eiffel Tower. END It was built in 1889."])
    from mmsr_serve.agent import Sampling

    sampling = Sampling(stop=("END",))
    result = await SearchAgent(backend).run("What is it?", mode="off", sampling=sampling)
    assert backend.requests[0].stop == ("END",)
    assert (result.answer, result.finish_reason) == ("It is the Eiffel Tower.", "stop")


async def test_mode_always_searches_the_image_then_requires_a_web_search() -> None:
    images, texts = FakeImageSearch(image_hits()), FakeTextSearch(text_hits())
    backend = ScriptedBackend(
        [
            f"{R}<answer>too early</answer>",
            f"{R}<text_search>page 0</text_search>",
            f"{R}<answer>Fact 0</answer>",
        ]
    )
    agent = SearchAgent(backend, image_search=images, text_search=texts)
    result = await agent.run("What is it?", photo(), mode="always")
    assert (result.answer, result.finish_reason) == ("Fact 0", "stop")
    assert result.search_calls == {"image": 1, "text": 1}
    assert result.searches[0].turn == 0  # run by the loop before the first model turn
    first_request = backend.requests[0].messages
    assert [m.role for m in first_request] == ["user", "user"]
    assert len(first_request[1].images) == 2  # the thumbnails
    assert "search the web once" in backend.requests[1].messages[-1].text


async def test_mode_always_accepts_an_answer_when_no_turn_is_left() -> None:
    backend = ScriptedBackend([f"{R}<answer>a</answer>"])
    agent = SearchAgent(backend, image_search=FakeImageSearch(image_hits()), text_search=FakeTextSearch())
    result = await agent.run("Q?", photo(), mode="always", limits=Limits(max_turns=1))
    assert (result.answer, result.search_calls) == ("a", {"image": 1, "text": 0})


async def test_an_undecodable_thumbnail_is_shown_by_its_title_only() -> None:
    hits = [ImageHit("Broken", "https://img.example/broken", b"<html>not an image</html>"), *image_hits(1)]
    backend = ScriptedBackend([IMG, f"{R}<answer>x</answer>"])
    result = await SearchAgent(backend, image_search=FakeImageSearch(hits)).run("Q?", photo())
    after_image = backend.requests[1].messages[-1]
    assert len(after_image.images) == 1  # only the good thumbnail
    assert "1. Title: Broken" in after_image.text and "2. Title: Page 0" in after_image.text
    assert result.finish_reason == "stop"


class InProcessBackend(ScriptedBackend):
    keeps_stop_strings = True


async def test_an_unclosed_tag_from_a_backend_that_keeps_stop_strings_is_malformed() -> None:
    # generation in process ended on end-of-sequence with an open tag: no stop string was hit,
    # so the loop must not write the closing tag the model never produced
    backend = InProcessBackend([f"{R}<answer>Paris", f"{R}<answer>Paris</answer>"])
    result = await SearchAgent(backend).run("Q?")
    assert result.turns[0].text == f"{R}<answer>Paris"
    assert result.turns[0].parsed.action == "none"
    assert (result.answer, len(result.turns)) == ("Paris", 2)


async def test_a_thumbnail_the_model_could_not_take_is_dropped() -> None:
    sliver = ImageHit("Sliver", "https://img.example/sliver", encode_image(Image.new("RGB", (600, 2))))
    backend = ScriptedBackend([IMG, f"{R}<answer>x</answer>"])
    await SearchAgent(backend, image_search=FakeImageSearch([sliver])).run("Q?", photo())
    after_image = backend.requests[1].messages[-1]
    assert after_image.images == [] and "1. Title: Sliver" in after_image.text
