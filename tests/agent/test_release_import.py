"""Importing a release checkout: a synthetic "release" with the official one's structure (its
files, its rollout's concatenation, its tools' strings) and our own words. The pack must render
the first, image-results, text-results and failed-search turns exactly as that release's own
code builds them."""

from __future__ import annotations

import importlib.util
import os
import pickle
import textwrap
from pathlib import Path
from types import ModuleType

import pytest
from PIL import Image

from mmsr_serve.agent import render
from mmsr_serve.agent.events import SearchRecord
from mmsr_serve.agent.limits import Limits
from mmsr_serve.agent.release import VISION_TOKENS, import_release
from mmsr_serve.backends.base import ImagePart, Message, TextPart
from mmsr_serve.errors import ConfigError
from mmsr_serve.images import encode_image, load_image
from mmsr_serve.search.base import ImageHit, TextHit

ROUND1 = "Think, then act. Shown next are a picture and a question:\n<image> "
AFTER_IMAGE = "Decide now: answer, or look something up in words."
AFTER_TEXT = "Give your answer now."

ROLLOUT = """
def results_message(search_result_txt, org_query, self):
    search_result_message = search_result_txt
    if "[Words Found]" in search_result_txt and "[Words Found] Trouble" not in search_result_txt:
        if self.user_prompt_after_text_search is not None:
            search_result_message = (
                "Found for you: <data>"
                + search_result_txt
                + "</data>\\n"
                + f"The question asked: {org_query}\\n"
                + self.user_prompt_after_text_search
            )
    if "[Pictures Found]" in search_result_txt and "[Pictures Found] Trouble" not in search_result_txt:
        if self.user_prompt_after_image_search is not None:
            search_result_message = (
                "Found for you: <data>"
                + search_result_txt
                + "</data>\\n"
                + f"The question asked: {org_query}\\n"
                + self.user_prompt_after_image_search
            )
    search_result_message = (
        "<|im_start|>user\\n" + search_result_message + "<|im_end|>\\n<|im_start|>assistant\\n"
    )
    return search_result_message
"""

IMAGE_TOOL = """
def call_image_search(image_url, ok=True):
    tool_returned_images = []
    tool_returned_str = "[Pictures Found] Pages showing this picture, best first:\\n"
    for i in range(3):
        tool_returned_images.append(i)
        tool_returned_str += (
            f"{i+1}) picture: <|vision_start|><|image_pad|><|vision_end|>\\nheading: fake page {i+1}\\n"
        )
    if not ok:
        tool_returned_str = "[Pictures Found] Trouble while searching; go on without it."
        tool_returned_images = []
    return tool_returned_str, tool_returned_images, {"success": ok}
"""

TEXT_TOOL = """
def call_text_search(text_query, ok=True):
    if ok:
        tool_returned_str = (
            "[Words Found] Summaries of the best pages for your query:\\n"
            "1) (https://a.example/one) The first page says one thing.\\n"
            "2) (https://b.example/two) The second page says another.\\n"
        )
    else:
        tool_returned_str = "[Words Found] Trouble while searching; go on without it."
    return tool_returned_str, {"success": ok}
"""


def _module(path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(path.stem, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def release(tmp_path: Path) -> Path:
    root = tmp_path / "release"
    files = {
        "mmsearch_r1/workers/multimodal/rollout/vllm_rollout_spmd.py": ROLLOUT,
        "mmsearch_r1/utils/tools/image_search.py": IMAGE_TOOL,
        "mmsearch_r1/utils/tools/text_search.py": TEXT_TOOL,
    }
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(textwrap.dedent(text))
    prompts = root / "mmsearch_r1" / "prompts"
    prompts.mkdir(parents=True)
    for name, value in [
        ("round_1_user_prompt_qwenvl.pkl", ROUND1),
        ("after_image_search_prompt_qwenvl.pkl", AFTER_IMAGE),
        ("after_text_search_prompt_qwenvl.pkl", AFTER_TEXT),
    ]:
        (prompts / name).write_bytes(pickle.dumps(value))
    return root


class _Prompts:
    user_prompt_after_image_search = AFTER_IMAGE
    user_prompt_after_text_search = AFTER_TEXT


def _as_release_text(message: Message) -> str:
    """A user turn as the release's rollout writes it: chat markup around the text, each
    image as its vision tokens."""
    body = "".join(p.text if isinstance(p, TextPart) else VISION_TOKENS for p in message.content)
    return "<|im_start|>user\n" + body + "<|im_end|>\n<|im_start|>assistant\n"


def _thumbnail() -> bytes:
    return encode_image(Image.new("RGB", (20, 20), "red"), "JPEG")


def test_the_results_turns_are_the_releases_own(release: Path) -> None:
    pack = import_release(release)
    rollout = _module(release / "mmsearch_r1/workers/multimodal/rollout/vllm_rollout_spmd.py")
    image_tool = _module(release / "mmsearch_r1/utils/tools/image_search.py")
    text_tool = _module(release / "mmsearch_r1/utils/tools/text_search.py")
    question = "Who built this bridge?"

    tool_text, images, _ = image_tool.call_image_search("key")
    hits = [ImageHit(f"fake page {i}", f"https://p.example/{i}", _thumbnail()) for i in (1, 2, 3)]
    ours = render.results_turn(pack, SearchRecord("image", None, list(hits), 1), question)
    assert _as_release_text(ours) == rollout.results_message(tool_text, question, _Prompts)
    assert len([p for p in ours.content if isinstance(p, ImagePart)]) == len(images) == 3

    tool_text, _ = text_tool.call_text_search("q")
    pages = [
        TextHit("One", "https://a.example/one", "The first page says one thing."),
        TextHit("Two", "https://b.example/two", "The second page says another."),
    ]
    ours = render.results_turn(pack, SearchRecord("text", "q", pages, 2), question)
    assert _as_release_text(ours) == rollout.results_message(tool_text, question, _Prompts)

    for kind, tool in (("image", image_tool.call_image_search), ("text", text_tool.call_text_search)):
        failed = tool("x", ok=False)[0]
        ours = render.results_turn(pack, SearchRecord(kind, "x", [], 1, error="HTTP 503"), question)  # type: ignore[arg-type]
        assert _as_release_text(ours) == rollout.results_message(failed, question, _Prompts)


async def test_the_first_turn_and_the_behaviour_come_with_it(release: Path) -> None:
    pack = import_release(release)
    image = await load_image(Image.new("RGB", (300, 300), "blue"), geometry=pack.image_geometry)
    first = render.first_turn(pack, "Who built this bridge?", image, Limits())
    text = "".join(p.text if isinstance(p, TextPart) else VISION_TOKENS for p in first.content)
    assert text == ROUND1.replace("<image>", VISION_TOKENS) + "Who built this bridge?"
    assert image.size == (512, 512)
    assert (pack.corrective_turns, pack.exact_actions, pack.stop_at_tags) == (False, True, False)


def test_a_release_of_another_shape_is_a_sentence(release: Path) -> None:
    tool = release / "mmsearch_r1/utils/tools/text_search.py"
    tool.write_text(TEXT_TOOL.replace("1) (https://a.example/one)", "first:"))
    with pytest.raises(ConfigError, match=r"text_search\.py"):
        import_release(release)
    with pytest.raises(ConfigError, match="does not look like a release checkout"):
        import_release(release / "nowhere")


def test_the_real_release_imports_when_a_checkout_is_given() -> None:
    checkout = Path(os.environ.get("MMSR_RELEASE_CHECKOUT", "/nonexistent"))
    if not (checkout / "mmsearch_r1").is_dir():
        pytest.skip("no release checkout (set MMSR_RELEASE_CHECKOUT to a clone of the release)")
    pack = import_release(checkout)
    assert "{results}" in pack.results_message and "<image>" in pack.image_result


def test_mmsr_pack_import_release_writes_a_pack_that_serves(release: Path, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from mmsr_serve.agent.pack_cli import pack_app
    from mmsr_serve.agent.prompts import load_pack

    out = tmp_path / "release.json"
    result = CliRunner().invoke(pack_app, ["import-release", str(release), str(out)])
    assert result.exit_code == 0, result.output
    assert load_pack(out) == import_release(release)  # the file holds the whole pack
    shown = CliRunner().invoke(pack_app, ["show", str(out)])
    assert shown.exit_code == 0 and '"exact_actions": true' in shown.output
    bad = CliRunner().invoke(pack_app, ["import-release", str(tmp_path / "nowhere"), str(out)])
    flat = "".join(bad.output.replace("│", "").split())  # the error box wraps long lines
    assert bad.exit_code == 2 and "doesnotlooklikeareleasecheckout" in flat
