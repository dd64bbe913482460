"""The paper's reward: every trajectory shape and normalisation rule of the paper."""

from __future__ import annotations

import pytest

from mmsr_train.reward import compute_reward, is_correct, normalize_answer, score_trajectory

R = "<reason>thinking</reason>"
IMG = f"{R}<search><img></search>"
TXT = f"{R}<text_search>glass heron designer</text_search>"


def ans(text: str) -> str:
    return f"{R}<answer>{text}</answer>"


@pytest.mark.parametrize(
    ("turns", "expected"),
    [
        ([ans("Paris")], 1.0),  # correct, no search
        ([IMG, ans("Paris")], 0.91),  # correct with image search
        ([TXT, ans("Paris")], 0.91),  # correct with text search
        ([IMG, TXT, ans("Paris")], 0.91),  # correct with both (one penalty, not per search)
        ([ans("Lyon")], 0.1),  # wrong but well formed
        ([IMG, TXT, ans("Lyon")], 0.1),  # wrong answers are not penalised for searching
        (["<answer>Paris</answer>"], 0.9),  # correct, malformed (no reasoning)
        ([IMG, f"{R}<answer>Paris</answer> trailing"], 0.0),  # the last turn does not end with an action
        ([TXT, TXT, ans("Paris")], 0.81),  # text -> text -> answer is not a valid shape
        ([TXT, IMG, ans("Paris")], 0.81),  # image search after text search: invalid shape
        ([IMG, IMG], 0.0),  # no answer at all
        ([IMG, TXT, TXT], 0.0),  # search in the last turn
        ([], 0.0),
        ([ans("Lyon") + " "], 0.1),  # trailing white space is still well formed
    ],
)
def test_trajectory_shapes(turns: list[str], expected: float) -> None:
    assert compute_reward(turns, "Paris") == pytest.approx(expected)


def test_per_search_penalty_applies_once_per_search() -> None:
    turns = [IMG, TXT, ans("Paris")]
    assert compute_reward(turns, "Paris", per_search_penalty=True) == pytest.approx(0.9 * 0.81 + 0.1)
    assert compute_reward([IMG, ans("Paris")], "Paris", per_search_penalty=True) == pytest.approx(0.91)
    assert compute_reward([ans("Paris")], "Paris", per_search_penalty=True) == pytest.approx(1.0)


def test_weights_are_parameters() -> None:
    turns = [IMG, ans("Paris")]
    assert compute_reward(turns, "Paris", search_penalty=0.5, format_weight=0.2) == pytest.approx(
        0.8 * 0.5 + 0.2
    )
    assert compute_reward([ans("x")], "Paris", format_weight=0.0) == 0.0


@pytest.mark.parametrize(
    ("prediction", "gold"),
    [
        ("The Eiffel Tower", "eiffel tower"),  # article and case
        ("an Apple", "apple"),
        ("Eiffel   Tower.", "Eiffel Tower"),  # white space and punctuation
        ("U.S.A.", "usa"),
        ("Kofi Mensah-Arlo", "kofi mensaharlo"),  # hyphen is punctuation
        ("“Paris”", "Paris"),  # Unicode quotes are punctuation too
    ],
)
def test_normalisation(prediction: str, gold: str) -> None:
    assert is_correct(prediction, [gold])
    assert compute_reward([ans(prediction)], gold) == pytest.approx(1.0)


def test_normalize_answer() -> None:
    assert normalize_answer("  The  Quick, brown FOX! ") == "quick brown fox"
    assert normalize_answer("theatre an another") == "theatre another"  # only whole words


def test_candidate_answers_count_as_correct() -> None:
    assert compute_reward([ans("NYC")], "New York City", ["NYC", "New York"]) == pytest.approx(1.0)
    assert compute_reward([ans("Boston")], "New York City", ["NYC"]) == pytest.approx(0.1)
    assert compute_reward([ans("b")], ["a", "b"]) == pytest.approx(1.0)  # several ground truths


def test_subem_accepts_a_prediction_that_contains_the_answer() -> None:
    turns = [ans("It was designed by Amalia Korsgaard in 1890")]
    assert compute_reward(turns, "Amalia Korsgaard") == pytest.approx(0.1)
    assert compute_reward(turns, "Amalia Korsgaard", mode="subem") == pytest.approx(1.0)
    assert not is_correct("Korsgaard", ["Amalia Korsgaard"], "subem")
    with pytest.raises(ValueError):
        is_correct("x", ["x"], "fuzzy")  # type: ignore[arg-type]


def test_parts_explain_the_reward() -> None:
    parts = score_trajectory([IMG, TXT, ans("Paris")], "Paris")
    assert (parts.accuracy, parts.format, parts.penalty, parts.searches, parts.answer) == (
        1,
        1,
        0.9,
        2,
        "Paris",
    )
    wrong = score_trajectory([IMG, ans("Lyon")], "Paris")
    assert (wrong.accuracy, wrong.penalty) == (0.0, 1.0)


def test_the_answer_comes_from_the_last_turn_only() -> None:
    quoted = "<reason>Maybe <answer>Paris</answer>? No.</reason><text_search>paris</text_search>"
    assert score_trajectory([quoted], "Paris").answer is None


def test_all_ascii_punctuation_is_removed() -> None:
    from mmsr_train.reward import is_correct, normalize_answer

    assert normalize_answer("$1.5 million") == "15 million"
    assert normalize_answer("a<b|c~d") == "abcd"
    assert is_correct("1.5 million", ["$1.5 million"])


def test_the_reward_function_logs_accuracy_per_data_source() -> None:
    from mmsr_train.grpo import make_reward_func

    logged: dict[str, float] = {}
    reward = make_reward_func()
    good, bad = [f"{R}<answer>Paris</answer>"], [f"{R}<answer>Rome</answer>"]
    rewards = reward(
        turns=[good, bad, good],
        ground_truth=["Paris", "Paris", "Paris"],
        candidate_answers=[[], [], []],
        log_metric=lambda name, value: logged.__setitem__(name, value),
        data_source=["fvqa_auto", "infoseek", "infoseek"],
    )
    assert rewards == pytest.approx([1.0, 0.1, 1.0])
    assert logged["reward/accuracy/fvqa_auto"] == 1.0 and logged["reward/accuracy/infoseek"] == 0.5
    assert logged["reward/accuracy"] == pytest.approx(2 / 3)
