import pytest

from mmsr_serve.agent.parser import (
    STOP_STRINGS,
    check_trajectory,
    is_valid_trajectory,
    parse_turn,
    restore_stop,
)

R = "<reason>I think about it.</reason>"


@pytest.mark.parametrize(
    ("text", "action", "answer", "query"),
    [
        (f"{R}<answer>Paris</answer>", "answer", "Paris", None),
        (f"{R}\n<answer> Paris </answer>\n\n  ", "answer", "Paris", None),
        (f"{R}<search><img></search>", "image_search", None, None),
        (f"{R}<search> <img> </search>", "image_search", None, None),
        (f"{R}<text_search>Eiffel  tower\n height</text_search>", "text_search", None, "Eiffel tower height"),
    ],
)
def test_each_action(text: str, action: str, answer: str | None, query: str | None) -> None:
    parsed = parse_turn(text)
    assert (parsed.action, parsed.answer, parsed.query) == (action, answer, query)
    assert parsed.reasoning == "I think about it."
    assert parsed.well_formed


def test_tags_quoted_inside_reasoning_are_not_actions() -> None:
    text = (
        "<reason>I could write <answer>Rome</answer> now, or use <search><img></search>, "
        "or <text_search>rome</text_search>; better to look it up.</reason>"
        "<text_search>capital of Italy</text_search>"
    )
    parsed = parse_turn(text)
    assert parsed.action == "text_search"
    assert parsed.query == "capital of Italy"
    assert parsed.reasoning.startswith("I could write <answer>Rome</answer>")
    assert not parsed.well_formed  # tags inside the reasoning break the strict shape


def test_action_is_decided_from_the_end_when_two_actions() -> None:
    parsed = parse_turn(f"{R}<text_search>q</text_search><answer>x</answer>")
    assert parsed.action == "answer" and parsed.answer == "x"
    assert not parsed.well_formed


def test_answer_then_search_is_a_search_and_malformed() -> None:
    parsed = parse_turn(f"{R}<answer>x</answer><search><img></search>")
    assert parsed.action == "image_search"
    assert not parsed.well_formed


def test_text_after_the_action_means_no_action() -> None:
    parsed = parse_turn(f"{R}<answer>x</answer> Hope this helps!")
    assert parsed.action == "none"
    assert parsed.error == "the turn does not end with an action"


@pytest.mark.parametrize(
    ("text", "error"),
    [
        (f"{R}<answer>Paris", "the turn does not end with an action"),
        (f"{R}Paris</answer>", "</answer> without <answer>"),
        (f"{R}<text_search>   </text_search>", "empty query"),
        (f"{R}<answer></answer>", "empty answer"),
        (f"{R}<search>the tower</search>", "an image search must be <search><img></search>"),
        ("", "the turn does not end with an action"),
        ("just some words", "the turn does not end with an action"),
    ],
)
def test_unusable_turns(text: str, error: str) -> None:
    parsed = parse_turn(text)
    assert parsed.action == "none"
    assert parsed.error == error
    assert not parsed.well_formed


def test_reasoning_without_reason_tags_is_kept_but_malformed() -> None:
    parsed = parse_turn("It is Paris. <answer>Paris</answer>")
    assert parsed.action == "answer"
    assert parsed.reasoning == "It is Paris."
    assert not parsed.well_formed


def test_unclosed_reason_is_read_up_to_the_action() -> None:
    parsed = parse_turn("<reason>maybe Paris <answer>Paris</answer>")
    assert parsed.reasoning == "maybe Paris"
    assert not parsed.well_formed


def test_empty_reasoning_is_not_well_formed() -> None:
    assert not parse_turn("<reason> </reason><answer>x</answer>").well_formed


def test_answer_keeps_inner_punctuation_and_angle_brackets() -> None:
    parsed = parse_turn(f'{R}<answer>x < 5, "quoted"</answer>')
    assert parsed.answer == 'x < 5, "quoted"'
    assert parsed.well_formed


@pytest.mark.parametrize(
    ("stripped", "restored"),
    [
        (f"{R}<answer>Paris", f"{R}<answer>Paris</answer>"),
        (f"{R}<search><img>", f"{R}<search><img></search>"),
        (f"{R}<text_search>eiffel tower ", f"{R}<text_search>eiffel tower</text_search>"),
    ],
)
def test_restore_stop_reappends_a_stripped_closing_tag(stripped: str, restored: str) -> None:
    assert restore_stop(stripped, "stop") == restored
    assert parse_turn(restore_stop(stripped, "stop")).well_formed


def test_restore_stop_leaves_complete_truncated_and_quoted_turns_alone() -> None:
    complete = f"{R}<answer>Paris</answer>"
    assert restore_stop(complete, "stop") == complete
    assert restore_stop(f"{R}<answer>Par", "length") == f"{R}<answer>Par"
    quoted = "<reason>I will use <answer> tags</reason> and then"
    assert restore_stop(quoted, "stop") == quoted


def test_stop_strings_are_the_closing_tags() -> None:
    assert set(STOP_STRINGS) == {"</answer>", "</search>", "</text_search>"}


@pytest.mark.parametrize(
    "shape",
    [
        ["<answer>a</answer>"],
        ["<search><img></search>", "<answer>a</answer>"],
        ["<text_search>q</text_search>", "<answer>a</answer>"],
        ["<search><img></search>", "<text_search>q</text_search>", "<answer>a</answer>"],
    ],
)
def test_the_four_valid_shapes(shape: list[str]) -> None:
    assert is_valid_trajectory([R + action for action in shape])


@pytest.mark.parametrize(
    "shape",
    [
        [],
        ["<search><img></search>"],
        ["<text_search>q</text_search>", "<search><img></search>", "<answer>a</answer>"],
        ["<text_search>q</text_search>", "<text_search>r</text_search>", "<answer>a</answer>"],
        ["<search><img></search>", "<search><img></search>", "<answer>a</answer>"],
        ["<answer>a</answer>", "<answer>b</answer>"],
    ],
)
def test_other_shapes_are_invalid(shape: list[str]) -> None:
    check = check_trajectory([R + action for action in shape])
    assert not check.valid
    assert "not a valid shape" in (check.reason or "")


def test_a_malformed_turn_invalidates_a_valid_shape() -> None:
    check = check_trajectory([f"{R}<search><img></search>", "no reason <answer>a</answer>"])
    assert not check.valid
    assert check.shape == ("image_search", "answer")
    assert check.reason == "turn 2 is not <reason>...</reason> + one action"


def test_long_turns_that_do_not_match_are_checked_in_linear_time() -> None:
    # A turn cut at its token limit: the old pattern backtracked quadratically on these
    # (2-3 s at 16k characters, minutes at this size).
    long_answer = "<reason>x</reason><answer>" + "a" * 200_000 + "</answer> trailing"
    assert parse_turn(long_answer).action == "none"
    assert not parse_turn("<reason>" + "word " * 40_000).well_formed
