"""The live readers of the protocol: whatever the split of a turn into deltas, the pieces they emit
add up to what the parser reads from the finished turn, and nothing uncertain is sent early."""

from __future__ import annotations

import random

import pytest

from mmsr_serve.agent import AnswerDelta, Finished, ReasoningDelta, SearchAgent, TextDelta
from mmsr_serve.agent.parser import parse_turn
from mmsr_serve.agent.protocol import STOP_STRINGS, TAGS, LiveReasoning, LiveText
from mmsr_serve.backends import ScriptedBackend

TURNS = [
    "<reason>  spaced   reasoning  </reason>  <answer> Paris </answer>",
    "<reason>It is the Belem tower, so <answer>Lisbon</answer>",  # </reason> forgotten
    "<reason>I quote <search> here</reason><text_search>q</text_search>",
    "preamble <reason>\n\nmulti\nline\n</reason><search><img></search>",
    "no tags at all, just text",
    "<reason></reason><answer>x</answer>",
    "<reason>ends mid-tag </reas",
]


def splits(text: str, rng: random.Random) -> list[str]:
    cuts = sorted(rng.sample(range(1, len(text)), min(len(text) - 1, rng.randint(0, 12))))
    return [text[a:b] for a, b in zip([0, *cuts], [*cuts, len(text)], strict=True)]


@pytest.mark.parametrize("turn", TURNS)
def test_live_reasoning_adds_up_to_the_parsed_reasoning(turn: str) -> None:
    rng = random.Random(0)
    for _ in range(50):
        live = LiveReasoning()
        pieces = [live.feed(delta) for delta in splits(turn, rng)]
        pieces.append(live.finish(parse_turn(turn).reasoning))
        assert "".join(pieces) == parse_turn(turn).reasoning


def test_a_partial_tag_is_held_back_and_turns_are_separated() -> None:
    live = LiveReasoning()
    assert live.feed("<reason>Thinking </") == "Thinking"
    assert live.feed("reason><answer>") == ""  # the tag ended the reasoning
    assert live.finish("Thinking") == ""
    live.next_turn()
    assert live.feed("<reason>Next") == "\n\nNext"
    assert live.feed(" step") == " step"


@pytest.mark.parametrize("stops", [(), ("Next",), ("Q:", "\n\n")])
def test_live_text_never_sends_what_a_stop_cuts(stops: tuple[str, ...]) -> None:
    reply = "  The capital is Paris.\n\nNext question Q: more"
    final = reply.lstrip()
    for s in stops:
        final = final.split(s)[0] if s in final else final
    rng = random.Random(1)
    for _ in range(50):
        live = LiveText(stops)
        sent = "".join(live.feed(delta) for delta in splits(reply, rng))
        assert final.startswith(sent)
        assert sent + live.finish(final) == final


def test_the_tags_are_the_protocols() -> None:
    assert set(STOP_STRINGS) <= set(TAGS) and len(TAGS) == len(set(TAGS)) == 11


async def test_the_loops_events_say_what_is_reasoning_and_what_is_the_answer() -> None:
    turns = ["<reason>First, look.</reason><text_search>q</text_search>", TURNS[0]]

    class Search:
        name = "fake"

        async def search_text(self, query: str, k: int):  # type: ignore[no-untyped-def]
            from mmsr_serve.search import SearchResults, TextHit

            return SearchResults([TextHit("t", "https://e.org", "body")], "fake")

    agent = SearchAgent(ScriptedBackend(turns), text_search=Search())
    events = [e async for e in agent.stream("Q?")]
    result = next(e.result for e in events if isinstance(e, Finished))
    live = "".join(e.reasoning for e in events if isinstance(e, TextDelta))
    reasoning = live + "".join(e.text for e in events if isinstance(e, ReasoningDelta))
    assert reasoning == result.reasoning == "First, look.\n\nspaced   reasoning"
    assert live  # the live pieces ride on the deltas, as soon as they are certain
    assert [e.text for e in events if isinstance(e, AnswerDelta)] == ["Paris"]
    assert isinstance(events[-2], AnswerDelta)  # after the last search, just before Finished
