"""Prompt packs: every text the model reads that is not the user's, kept as data.

A pack holds the first-turn instructions (with and without an image), the wrappers that render
search results into the next user turn, and the short messages the loop sends when something went
wrong. Templates use ``{name}`` placeholders; only the names a template is rendered with are
replaced, so other braces in a pack are left alone.

The project ships its own pack (``packs/default.json``). A checkpoint trained elsewhere expects
its authors' prompts: :func:`load_pack` reads a pack file (JSON or YAML) and
:func:`import_release_prompts` turns the official release's three pickled prompt strings into a pack.
"""

from __future__ import annotations

import dataclasses
import io
import json
import pickle
import re
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from mmsr_serve.errors import ConfigError
from mmsr_serve.images import RESAMPLING, ImageGeometry

IMAGE_MARKER = "<image>"
_PLACEHOLDER = re.compile(r"\{([a-z_]+)\}")

# The placeholders each template may use; a pack using others is rejected at load time.
_FIELDS: dict[str, frozenset[str]] = {
    "first_turn": frozenset({"question", "max_image_searches", "max_text_searches"}),
    "first_turn_text_only": frozenset({"question", "max_image_searches", "max_text_searches"}),
    "results_message": frozenset({"results", "question", "follow_up"}),
    "after_image_search": frozenset({"question"}),
    "after_text_search": frozenset({"question"}),
    "image_result": frozenset({"index", "title", "url"}),
    "text_result": frozenset({"index", "title", "url", "text"}),
    "image_results_header": frozenset({"count"}),
    "text_results_header": frozenset({"count"}),
    "image_result_separator": frozenset(),
    "text_result_separator": frozenset(),
    "no_results": frozenset({"kind"}),
    "search_failed": frozenset({"kind", "error"}),
    "image_search_failed_turn": frozenset({"error", "question"}),
    "text_search_failed_turn": frozenset({"error", "question"}),
    "search_refused": frozenset({"kind"}),
    "format_reminder": frozenset(),
    "text_search_required": frozenset(),
}


@dataclass(frozen=True)
class PromptPack:
    name: str
    first_turn: str
    first_turn_text_only: str
    results_message: str
    after_image_search: str
    after_text_search: str
    image_result: str
    text_result: str
    no_results: str
    search_failed: str
    search_refused: str
    format_reminder: str
    text_search_required: str
    """Sent in the ``always`` search mode when the model answers before its one web search."""
    system: str | None = None
    version: int = 1
    # --- the layout of a results turn (the defaults render this project's) ---
    image_results_header: str = ""
    """Text before the image hits (``{count}``: how many)."""
    text_results_header: str = ""
    image_result_separator: str = "\n"
    """Between two hits (after each hit's own text)."""
    text_result_separator: str = "\n\n"
    image_search_failed_turn: str | None = None
    """A failed image search's whole user turn (``{error}``, ``{question}``), in place of
    ``results_message`` around ``search_failed``; None: the wrapper."""
    text_search_failed_turn: str | None = None
    # --- how the checkpoint was trained to take turns (the defaults are this project's protocol) ---
    corrective_turns: bool = True
    """A malformed turn, or a search over its limit, gets a reminder turn while turns remain
    (``format_reminder`` / ``search_refused``). False: it ends the run (``invalid``), as in a
    training that never showed the model such a turn."""
    stop_at_tags: bool = True
    """Each turn stops at an action's closing tag. False: at the model's own end-of-turn token only."""
    exact_actions: bool = False
    """A search runs only when the turn ends with its exact tag (``<search><img></search>``, no
    spaces; a one-line ``<text_search>`` query); any other turn ends the run, its answer the last
    ``<answer>`` it holds. False: the lenient reading of :func:`~mmsr_serve.agent.parser.parse_turn`."""
    image_max_pixels: int | None = None
    """The user's image is resized to at most this many pixels before the first turn (None: the
    server's ``max_image_pixels``, downscaling only)."""
    image_min_pixels: int | None = None
    """... and at least this many (smaller pictures are upscaled)."""
    image_resample: str = "bicubic"
    """The resampling of those resizes: nearest, bilinear, bicubic or lanczos."""

    def __post_init__(self) -> None:
        if IMAGE_MARKER not in self.first_turn:
            raise ConfigError(f"prompt pack {self.name!r}: first_turn must contain the {IMAGE_MARKER} marker")
        if self.image_resample not in RESAMPLING:
            methods = sorted(RESAMPLING)
            raise ConfigError(f"prompt pack {self.name!r}: image_resample must be one of {methods}")
        low, high = self.image_min_pixels, self.image_max_pixels
        if (low is not None and low < 1) or (high is not None and high < 1) or (low and high and low > high):
            raise ConfigError(f"prompt pack {self.name!r}: image_min_pixels / image_max_pixels out of order")

    @property
    def image_geometry(self) -> ImageGeometry | None:
        """The checkpoint's image sizes, when the pack sets them."""
        if self.image_max_pixels is None and self.image_min_pixels is None:
            return None
        return ImageGeometry(self.image_max_pixels, self.image_min_pixels, self.image_resample)

    def check_placeholders(self) -> PromptPack:
        """Reject ``{name}`` placeholders a template is never rendered with (typos in a pack file)."""
        for field_name, allowed in _FIELDS.items():
            unknown = set(_PLACEHOLDER.findall(getattr(self, field_name) or "")) - allowed
            if unknown:
                raise ConfigError(f"prompt pack {self.name!r}: {field_name} uses unknown {sorted(unknown)}")
        return self

    def render(self, template: str, **values: object) -> str:
        """Fill ``{name}`` placeholders of the named template with ``values``."""
        text: str = getattr(self, template)
        return _PLACEHOLDER.sub(lambda m: str(values[m[1]]) if m[1] in values else m[0], text)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PromptPack:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - names
        if unknown:
            raise ConfigError(f"prompt pack has unknown keys: {sorted(unknown)}")
        missing = {f.name for f in dataclasses.fields(cls) if f.default is dataclasses.MISSING} - set(data)
        if missing:
            raise ConfigError(f"prompt pack is missing keys: {sorted(missing)}")
        return cls(**data)

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.write_text(json.dumps(self.to_dict(), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        return path


@cache
def default_pack() -> PromptPack:
    """The project's own pack, written for this protocol."""
    text = resources.files("mmsr_serve.agent").joinpath("packs/default.json").read_text("utf-8")
    return PromptPack.from_dict(json.loads(text)).check_placeholders()


CHECKPOINT_PACK_FILES = ("prompt_pack.json", "prompt_pack.yaml")
"""Names of the pack a checkpoint folder carries next to its weights (training writes the first)."""


def checkpoint_pack(folder: str | Path) -> Path | None:
    """The pack file inside a checkpoint folder, if it has one."""
    for name in CHECKPOINT_PACK_FILES:
        path = Path(folder) / name
        if path.is_file():
            return path
    return None


def load_pack(path: str | Path) -> PromptPack:
    """Load a pack from a JSON or YAML file. Keys missing from the file are taken from the default."""
    path = Path(path)
    try:
        raw = path.read_text(encoding="utf-8")
        data = yaml.safe_load(raw) if path.suffix in (".yaml", ".yml") else json.loads(raw)
    except (OSError, ValueError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot read prompt pack {path}: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"prompt pack {path} must hold a mapping")
    return PromptPack.from_dict({**default_pack().to_dict(), "name": path.stem, **data}).check_placeholders()


class _StringsOnly(pickle.Unpickler):
    """Unpickle plain data only: the release's files are strings, and pickle can run code."""

    def find_class(self, module: str, name: str) -> Any:
        raise ConfigError(f"refusing to unpickle {module}.{name}: prompt files must hold a string")


def _unpickle_string(source: str | Path | bytes) -> str:
    data = source if isinstance(source, bytes) else Path(source).read_bytes()
    try:
        value = _StringsOnly(io.BytesIO(data)).load()
    except ConfigError:
        raise
    except Exception as exc:  # pickle raises many unrelated types on bad input
        raise ConfigError(f"cannot unpickle prompt file: {exc}") from exc
    if not isinstance(value, str):
        raise ConfigError(f"prompt file holds {type(value).__name__}, expected str")
    return value


RELEASE_BEHAVIOUR: dict[str, Any] = {
    # Its rollout reads the action from exact tags at the end of each turn and ends the trajectory
    # on any other turn: the checkpoint never saw a corrective turn.
    "corrective_turns": False,
    "exact_actions": True,
    # Its turns end at the model's <|im_end|> (vLLM's EOS); no stop strings.
    "stop_at_tags": False,
    # Its dataset code resizes each image into [512*512, 672*672*2] pixels, nearest-neighbour.
    "image_max_pixels": 672 * 672 * 2,
    "image_min_pixels": 512 * 512,
    "image_resample": "nearest",
}
"""How the official release's training took turns and sized images (facts of its code, no text)."""


def import_release_prompts(
    round1: str | Path | bytes,
    after_image_search: str | Path | bytes,
    after_text_search: str | Path | bytes,
    *,
    name: str = "mmsearch-r1-release",
) -> PromptPack:
    """Build a pack from the official release's pickled prompts (paths or raw pickle bytes).

    The pack also says how the release's rollout took turns and sized images, which its
    checkpoint was trained on (:data:`RELEASE_BEHAVIOUR`): no corrective turns, turns that end at
    the model's end-of-turn token, actions read as exact tags, and user images resized to
    between 512*512 and 672*672*2 pixels with nearest-neighbour resampling.

    The round-1 prompt holds an ``<image>`` marker; the question follows it (appended when the
    text has no ``{question}`` placeholder). Text-only requests reuse it with the marker removed.
    The release's texts are taken verbatim (braces in them are left alone, not checked as
    placeholders). The after-search prompts become the follow-up instructions; result wrappers come from the
    default pack, which renders results in the protocol's layout (``<information>`` block, the
    question again, then the instructions).
    """
    first = _unpickle_string(round1)
    if IMAGE_MARKER not in first:
        raise ConfigError("the round-1 prompt has no <image> marker")
    if "{question}" not in first:
        first += "{question}" if first[-1:].isspace() else "\n{question}"
    return PromptPack.from_dict(
        {
            **default_pack().to_dict(),
            "name": name,
            "first_turn": first,
            "first_turn_text_only": re.sub(r"[ \t]*<image>[ \t]*\n?", "", first),
            "after_image_search": _unpickle_string(after_image_search),
            "after_text_search": _unpickle_string(after_text_search),
            **RELEASE_BEHAVIOUR,
        }
    )
