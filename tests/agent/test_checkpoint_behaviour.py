"""What a prompt pack says about the checkpoint's training: corrective turns, where a turn stops,
how its action is read, and the image sizes (the released checkpoint's settings among them)."""

from __future__ import annotations

import dataclasses
import io
from typing import Any

import pytest
from PIL import Image

from mmsr_serve import Limits, SearchAgent
from mmsr_serve.agent.parser import STOP_STRINGS, parse_turn
from mmsr_serve.agent.prompts import PromptPack, default_pack, load_pack
from mmsr_serve.backends import ScriptedBackend
from mmsr_serve.errors import ConfigError
from mmsr_serve.images import ImageGeometry, decode_image, encode_image
from tests.agent.test_loop import FakeImageSearch, FakeTextSearch

R = "<reason>thinking</reason>"
# As the release's dataset code resized its images: at most 672*672*2 pixels, at least 512*512,
# nearest-neighbour resampling (the figures of docs/official-checkpoint.md).
RELEASE_GEOMETRY = {
    "image_max_pixels": 672 * 672 * 2,
    "image_min_pixels": 512 * 512,
    "image_resample": "nearest",
}


def pack(**options: Any) -> PromptPack:
    return dataclasses.replace(default_pack(), **options)


@pytest.mark.parametrize(
    ("turn", "action", "value"),
    [
        (f"{R}<search><img></search>", "image_search", None),
        (f"{R}<search><img></search>\n", "image_search", None),  # `$` allows one final newline
        (f"{R}<search> <img> </search>", "none", None),  # spaced: no search in the exact reading
        (f"{R}<text_search>Quillby tower</text_search>", "text_search", "Quillby tower"),
        (f"{R}<text_search>two\nlines</text_search>", "none", None),
        (f"{R}<text_search></text_search>", "none", None),
        (f"{R}<answer>Paris</answer> and more", "answer", "Paris"),  # text after the answer
        ("<reason>I could <search><img></search></reason><answer>B</answer>", "answer", "B"),
        ("no tags at all", "none", None),
    ],
)
def test_the_exact_reading_of_a_turn(turn: str, action: str, value: str | None) -> None:
    parsed = parse_turn(turn, exact=True)
    assert parsed.action == action
    assert (parsed.query if action == "text_search" else parsed.answer) == value


def test_lenient_and_exact_readings_differ_where_the_release_is_strict() -> None:
    spaced = f"{R}<search> <img> </search>"
    assert parse_turn(spaced).action == "image_search" and parse_turn(spaced, exact=True).action == "none"
    trailing = f"{R}<answer>Paris</answer> and more"
    assert parse_turn(trailing).action == "none" and parse_turn(trailing, exact=True).answer == "Paris"


async def test_without_corrective_turns_a_malformed_turn_ends_the_run() -> None:
    turns = ["no protocol here", f"{R}<answer>late</answer>"]
    backend = ScriptedBackend(turns)
    result = await SearchAgent(backend, pack=pack(corrective_turns=False)).run("Q?")
    assert result.finish_reason == "invalid" and result.answer is None
    assert len(backend.requests) == 1  # no reminder turn was sent
    served = ScriptedBackend(turns)
    assert (await SearchAgent(served).run("Q?")).answer == "late"  # the default reminds, then answers
    assert "no protocol here" in served.requests[1].messages[-2].text


async def test_stop_at_tags_off_sends_no_stop_strings() -> None:
    tagged, eos = ScriptedBackend([f"{R}<answer>A</answer>"]), ScriptedBackend([f"{R}<answer>A</answer>"])
    await SearchAgent(tagged).run("Q?")
    await SearchAgent(eos, pack=pack(stop_at_tags=False)).run("Q?")
    assert tagged.requests[0].stop == STOP_STRINGS and eos.requests[0].stop == ()


async def test_exact_actions_decide_what_runs() -> None:
    picture = Image.new("RGB", (64, 64), "red")
    spaced = f"{R}<search> <img> </search>"
    release = pack(exact_actions=True, corrective_turns=False, stop_at_tags=False)
    backend, image, text = ScriptedBackend([spaced]), FakeImageSearch(), FakeTextSearch()
    result = await SearchAgent(backend, image_search=image, text_search=text, pack=release).run("Q?", picture)
    assert image.calls == [] and result.finish_reason == "invalid" and len(backend.requests) == 1
    lenient, image = ScriptedBackend([spaced, f"{R}<answer>A</answer>"]), FakeImageSearch()
    assert (await SearchAgent(lenient, image_search=image, limits=Limits()).run("Q?", picture)).answer == "A"
    assert len(image.calls) == 1  # the lenient reading searched


def _jpeg(size: tuple[int, int]) -> bytes:
    image = Image.effect_noise(size, 60).convert("RGB")
    return encode_image(image, "JPEG", quality=92)


@pytest.mark.parametrize("size", [(300, 300), (384, 512), (2000, 1000), (800, 700)])
def test_the_release_geometry_resizes_as_its_training_did(size: tuple[int, int]) -> None:
    data = _jpeg(size)
    geometry = ImageGeometry(672 * 672 * 2, 512 * 512, "nearest")
    got = decode_image(data, geometry=geometry).image
    # the training's own steps, on the full picture: down to the maximum, then up to the minimum
    with Image.open(io.BytesIO(data)) as original:
        want = original.convert("RGB")
    for bound, too in ((672 * 672 * 2, lambda a, b: a > b), (512 * 512, lambda a, b: a < b)):
        w, h = want.size
        if too(w * h, bound):
            scale = (bound / (w * h)) ** 0.5
            want = want.resize((int(w * scale), int(h * scale)), resample=Image.Resampling.NEAREST)
    assert got.size == want.size and got.tobytes() == want.tobytes()
    assert 512 * 512 * 0.99 <= got.size[0] * got.size[1] <= 672 * 672 * 2


async def test_the_pack_geometry_reaches_the_model() -> None:
    backend = ScriptedBackend([f"{R}<answer>A</answer>"] * 2)
    small = Image.new("RGB", (300, 300), "blue")
    await SearchAgent(backend, pack=pack(**RELEASE_GEOMETRY)).run("Q?", small)
    await SearchAgent(backend).run("Q?", small)
    with_pack = next(m.images for m in backend.requests[0].messages if m.images)[0]
    default = next(m.images for m in backend.requests[1].messages if m.images)[0]
    assert with_pack.size == (512, 512)  # 324 vision tokens, as in training; not 121
    assert default.size == (300, 300)


def test_pack_options_load_from_a_file_and_are_checked(tmp_path: Any) -> None:
    path = tmp_path / "pack.json"
    path.write_text('{"corrective_turns": false, "image_min_pixels": 1000, "image_resample": "nearest"}')
    loaded = load_pack(path)
    assert loaded.corrective_turns is False and loaded.image_geometry == ImageGeometry(None, 1000, "nearest")
    assert default_pack().image_geometry is None
    with pytest.raises(ConfigError, match="image_resample"):
        pack(image_resample="sinc")
    with pytest.raises(ConfigError, match="out of order"):
        pack(image_min_pixels=10, image_max_pixels=5)
