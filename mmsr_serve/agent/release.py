"""A prompt pack from a checkout of the official MMSearch-R1 release, so that its checkpoint is
served the conversation it was trained on.

The release's texts are read from the user's checkout at run time, never copied into this
project: its three pickled prompts (:func:`~mmsr_serve.agent.prompts.import_release_prompts`),
and, by parsing its Python source (``ast``, nothing is executed), the strings its training
rollout and its search tools put around the results:

- the rollout's results message (``mmsearch_r1/workers/multimodal/rollout/vllm_rollout_spmd.py``):
  the concatenation assigned to ``search_result_message`` around the tool's text, the original
  question and the after-search prompt, read as ``results_message`` with ``{results}``,
  ``{question}`` and ``{follow_up}``;
- each tool's header, per-hit layout and error text (``mmsearch_r1/utils/tools/image_search.py``
  and ``text_search.py``): the first string assigned to ``tool_returned_str`` is the header; the
  image tool's per-hit f-string is the hit layout (its first number the hit's index, its vision
  tokens the thumbnail, the value after the last ``": "`` of its last line the title); the text
  tool's first listed hit line is the layout (number, ``(link)``, summary); the string assigned in
  the failure branch is the failed search's whole turn.

Hits end with their own newline there, so the separators are empty. A layout that cannot be read
(another version of the release) is a :class:`ConfigError` naming the file: write that part of
the pack by hand then (docs/official-checkpoint.md).
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

from mmsr_serve.agent.prompts import IMAGE_MARKER, PromptPack, import_release_prompts
from mmsr_serve.errors import ConfigError

PROMPTS = "mmsearch_r1/prompts"
PROMPT_FILES = (
    "round_1_user_prompt_qwenvl.pkl",
    "after_image_search_prompt_qwenvl.pkl",
    "after_text_search_prompt_qwenvl.pkl",
)
ROLLOUT = "mmsearch_r1/workers/multimodal/rollout/vllm_rollout_spmd.py"
IMAGE_TOOL = "mmsearch_r1/utils/tools/image_search.py"
TEXT_TOOL = "mmsearch_r1/utils/tools/text_search.py"
VISION_TOKENS = "<|vision_start|><|image_pad|><|vision_end|>"
"""Qwen2.5-VL's placeholder for one image in a text: the thumbnail's place in a hit."""
_TOOL_TEXT = "tool_returned_str"
_FIELD = re.compile(r"\{([a-z_]+)\}")


def import_release(checkout: str | Path, *, name: str = "mmsearch-r1-release") -> PromptPack:
    """The pack of the release at ``checkout`` (a clone of EvolvingLMMs-Lab/multimodal-search-r1)."""
    root = Path(checkout)
    prompts = [root / PROMPTS / f for f in PROMPT_FILES]
    missing = [str(p) for p in prompts if not p.is_file()]
    if missing:
        raise ConfigError(f"{root} does not look like a release checkout: no {', '.join(missing)}")
    pack = import_release_prompts(*prompts, name=name)
    image_header, image_hit, image_failed = _image_tool(_parse(root / IMAGE_TOOL))
    text_header, text_hit, text_failed = _text_tool(_parse(root / TEXT_TOOL))
    data = {
        **pack.to_dict(),
        "results_message": _results_message(_parse(root / ROLLOUT)),
        "image_results_header": _literal(image_header),
        "text_results_header": _literal(text_header),
        "image_result": image_hit,
        "text_result": text_hit,
        "image_result_separator": "",
        "text_result_separator": "",
        "image_search_failed_turn": _literal(image_failed),
        "text_search_failed_turn": _literal(text_failed),
        "no_results": "",  # the header alone, as the tool's text with no hit would be
    }
    return PromptPack.from_dict(data)


def _parse(path: Path) -> tuple[Path, ast.Module]:
    try:
        return path, ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    except (OSError, SyntaxError, ValueError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from exc


def _literal(text: str) -> str:
    """A release text as a template with no placeholders: its braces doubled would not do (the
    pack renders only known names), so a ``{name}`` of ours in it is refused instead."""
    if _FIELD.search(text):
        raise ConfigError(f"a release text holds a {{name}} placeholder the pack would fill: {text[:60]!r}")
    return text


def _sum(node: ast.expr) -> list[ast.expr]:
    """The operands of ``a + b + c``, in order."""
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        return _sum(node.left) + _sum(node.right)
    return [node]


def _results_message(source: tuple[Path, ast.Module]) -> str:
    path, tree = source
    templates: set[str] = set()
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Assign) and len(node.targets) == 1):
            continue
        target, pieces = node.targets[0], _sum(node.value)
        if not (isinstance(target, ast.Name) and target.id == "search_result_message" and len(pieces) > 1):
            continue
        if not any(isinstance(p, ast.Attribute) and p.attr.startswith("user_prompt_after") for p in pieces):
            continue  # the chat-markup wrapping, not the results message
        templates.add("".join(_piece(p, path) for p in pieces))
    if len(templates) != 1:
        found = len(templates)
        raise ConfigError(f"{path}: expected one results-message layout for both searches, found {found}")
    template = templates.pop()
    if not all(f"{{{field}}}" in template for field in ("results", "question", "follow_up")):
        raise ConfigError(f"{path}: the results message lacks the results, the question or the prompt")
    return template


def _piece(node: ast.expr, path: Path) -> str:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return _literal(node.value)
    if isinstance(node, ast.Name):
        return "{results}"  # the tool's text
    if isinstance(node, ast.Attribute):
        return "{follow_up}"  # the after-search prompt
    if isinstance(node, ast.JoinedStr):  # f"...{org_query}...": the user's question
        return "".join(
            _literal(str(v.value)) if isinstance(v, ast.Constant) else "{question}" for v in node.values
        )
    raise ConfigError(f"{path}:{node.lineno}: an unexpected part in the results message")


def _assigned_strings(function: ast.FunctionDef) -> list[ast.expr]:
    return [
        node.value
        for node in ast.walk(function)
        if isinstance(node, ast.Assign)
        and any(isinstance(t, ast.Name) and t.id == _TOOL_TEXT for t in node.targets)
    ]


def _tool_function(source: tuple[Path, ast.Module], name: str) -> ast.FunctionDef:
    path, tree = source
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name == name:
            return node
    raise ConfigError(f"{path}: no function {name}")


def _strings(values: list[ast.expr]) -> list[str]:
    return [v.value for v in values if isinstance(v, ast.Constant) and isinstance(v.value, str)]


def _image_tool(source: tuple[Path, ast.Module]) -> tuple[str, str, str]:
    path = source[0]
    function = _tool_function(source, "call_image_search")
    strings = _strings(_assigned_strings(function))
    hits = [
        node.value
        for node in ast.walk(function)
        if isinstance(node, ast.AugAssign)
        and isinstance(node.target, ast.Name)
        and node.target.id == _TOOL_TEXT
        and isinstance(node.value, ast.JoinedStr)
    ]
    if len(strings) < 2 or len(hits) != 1:
        raise ConfigError(f"{path}: cannot find the image tool's header, hit layout and error text")
    return strings[0], _image_hit(hits[0], path), strings[-1]


def _image_hit(hit: ast.JoinedStr, path: Path) -> str:
    marked = "".join(str(v.value) if isinstance(v, ast.Constant) else "\0" for v in hit.values)
    if VISION_TOKENS not in marked or not marked.startswith("\0") or not marked.endswith("\n"):
        raise ConfigError(f"{path}: the image hit layout is not 'N...<vision tokens>...title\\n'")
    layout = "{index}" + marked[1:].replace(VISION_TOKENS, IMAGE_MARKER)
    head, _, last = layout[:-1].rpartition("\n")
    label, colon, _ = last.rpartition(": ")
    if not colon:
        raise ConfigError(f"{path}: the image hit's last line has no 'label: title'")
    layout = f"{head}\n{label}: {{title}}\n" if head else f"{label}: {{title}}\n"
    if "\0" in layout:
        raise ConfigError(f"{path}: the image hit layout has more values than its index and title")
    return _checked(layout, ("index", "title"), path)


def _text_tool(source: tuple[Path, ast.Module]) -> tuple[str, str, str]:
    path = source[0]
    strings = _strings(_assigned_strings(_tool_function(source, "call_text_search")))
    if len(strings) < 2:
        raise ConfigError(f"{path}: cannot find the text tool's results and error text")
    listing, failed = strings[0], strings[-1]
    header, _, body = listing.partition("\n")
    first = re.match(r"1(\D*?)\((.*?)\)(\s*)(.*)\n", body)
    if first is None:
        raise ConfigError(f"{path}: the text tool's hits are not '1. (link) summary' lines")
    layout = "{index}" + _literal(first.group(1)) + "({url})" + first.group(3) + "{text}\n"
    return header + "\n", _checked(layout, ("index", "url", "text"), path), failed


def _checked(layout: str, fields: tuple[str, ...], path: Path) -> str:
    found = set(_FIELD.findall(layout))
    if found != set(fields):
        raise ConfigError(f"{path}: the hit layout {layout!r} has {sorted(found)}, expected {sorted(fields)}")
    return layout
