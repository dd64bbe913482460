import json
import pickle
from pathlib import Path

import pytest

from mmsr_serve.agent.prompts import (
    IMAGE_MARKER,
    PromptPack,
    default_pack,
    import_release_prompts,
    load_pack,
)
from mmsr_serve.errors import ConfigError


def test_default_pack_describes_every_action_and_places_the_image() -> None:
    pack = default_pack()
    text = pack.render("first_turn", question="Q?", max_image_searches=1, max_text_searches=2)
    for tag in ("<reason>", "<answer>", "<search><img></search>", "<text_search>"):
        assert tag in text
    assert text.count(IMAGE_MARKER) == 1
    assert text.rstrip().endswith("Question: Q?")
    assert "1 image search and 2 web searches" in text
    assert "<search><img></search>" not in pack.render("first_turn_text_only", question="Q?")


def test_render_leaves_unrelated_braces_alone() -> None:
    pack = PromptPack.from_dict(
        {**default_pack().to_dict(), "after_text_search": 'Use {"json": 1} {question}'}
    )
    assert pack.render("after_text_search", question="q") == 'Use {"json": 1} q'


def test_pack_roundtrips_through_a_file(tmp_path: Path) -> None:
    path = default_pack().save(tmp_path / "pack.json")
    assert load_pack(path) == default_pack()


def test_partial_yaml_pack_takes_the_rest_from_the_default(tmp_path: Path) -> None:
    path = tmp_path / "mine.yaml"
    path.write_text("format_reminder: Use the tags, please.\nsystem: You are helpful.\n")
    pack = load_pack(path)
    assert pack.name == "mine"
    assert pack.format_reminder == "Use the tags, please."
    assert pack.system == "You are helpful."
    assert pack.first_turn == default_pack().first_turn


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"nonsense": 1}', "unknown keys"),
        ('{"search_failed": "{kind} {secret}"}', "unknown ['secret']"),
        ('{"first_turn": "no marker {question}"}', "<image> marker"),
        ("[1, 2]", "must hold a mapping"),
        ("{not json", "cannot read prompt pack"),
    ],
)
def test_bad_pack_files_are_rejected_clearly(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        load_pack(path)


def _pickle_files(tmp_path: Path, round1: object) -> list[Path]:
    paths = []
    for name, value in [
        ("r1", round1),
        ("img", "Now decide: answer or search text."),
        ("txt", "Answer now."),
    ]:
        path = tmp_path / f"{name}.pkl"
        path.write_bytes(pickle.dumps(value))
        paths.append(path)
    return paths


def test_import_release_prompts(tmp_path: Path) -> None:
    r1, img, txt = _pickle_files(
        tmp_path, "Use the tools {wisely}.\nHere is the image and the question:\n<image> "
    )
    pack = import_release_prompts(r1, img, txt)
    first = pack.render("first_turn", question="Who built it?")
    assert first == "Use the tools {wisely}.\nHere is the image and the question:\n<image> Who built it?"
    assert IMAGE_MARKER not in pack.render("first_turn_text_only", question="Q")
    assert pack.after_image_search == "Now decide: answer or search text."
    assert pack.after_text_search == "Answer now."
    assert pack.results_message == default_pack().results_message
    # the release's turn-taking and image sizes come with its prompts
    assert (pack.corrective_turns, pack.stop_at_tags, pack.exact_actions) == (False, False, True)
    geometry = pack.image_geometry
    assert geometry is not None and (geometry.max_pixels, geometry.min_pixels) == (903_168, 262_144)
    assert geometry.resample == "nearest"


def test_imported_pack_saves_and_loads_as_a_normal_pack(tmp_path: Path) -> None:
    pack = import_release_prompts(*_pickle_files(tmp_path, "Look:\n<image>\nQuestion: "))
    loaded = load_pack(pack.save(tmp_path / "release.json"))
    assert loaded.render("first_turn", question="Q") == "Look:\n<image>\nQuestion: Q"
    assert loaded.after_text_search == "Answer now."
    assert loaded.image_geometry == pack.image_geometry and loaded.exact_actions


def test_import_refuses_pickles_that_are_not_strings(tmp_path: Path) -> None:
    r1, img, txt = _pickle_files(tmp_path, {"not": "a string"})
    with pytest.raises(ConfigError, match="expected str"):
        import_release_prompts(r1, img, txt)


def test_import_refuses_pickles_that_would_run_code(tmp_path: Path) -> None:
    class Evil:
        def __reduce__(self) -> tuple[object, tuple[str]]:
            return (print, ("pwned",))

    r1, img, txt = _pickle_files(tmp_path, "<image>")
    r1.write_bytes(pickle.dumps(Evil()))
    with pytest.raises(ConfigError, match=r"refusing to unpickle builtins\.print"):
        import_release_prompts(r1, img, txt)


def test_import_requires_the_image_marker(tmp_path: Path) -> None:
    r1, img, txt = _pickle_files(tmp_path, "no marker here")
    with pytest.raises(ConfigError, match="no <image> marker"):
        import_release_prompts(r1, img, txt)


def test_default_pack_file_is_valid_json() -> None:
    from importlib import resources

    data = json.loads(resources.files("mmsr_serve.agent").joinpath("packs/default.json").read_text())
    assert data["name"] == "mmsr-default"
