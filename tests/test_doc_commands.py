"""Every ``mmsr`` command written in README.md and docs/ parses against the real CLI.

Commands are taken from the shell code blocks and from inline code spans; each is parsed by the
command's own click parser (nothing runs): an unknown sub-command or option, a missing argument
or an extra one fails here, naming the file and the command. Values that cannot be checked
without the user's files (``photo.jpg``, ``CKPT``) are not: a bad value of an option is accepted.
Commands that run end to end in CI are elsewhere (tests/test_docs.py, tests/api, tests/train).
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

import pytest

from mmsr_serve.cli import COMMANDS, load_command

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
SHELL_BLOCK = re.compile(r"```(?:bash|sh|shell|console)?\n(.*?)```", re.DOTALL)
INLINE = re.compile(r"(?<!`)`(mmsr [^`]+)`(?!`)")
SEPARATORS = re.compile(r"\s(?:&&|\|\||;|\|)\s|\s&$|\s&\s")


def _commands(text: str) -> list[str]:
    found: list[str] = []
    for block in SHELL_BLOCK.findall(text):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.strip().removeprefix("$ ")
            for piece in SEPARATORS.split(line):
                found += _mmsr(piece)
    for span in INLINE.findall(text):
        if re.search(r"\.\.\.|[<>\[\]|…]", span):
            continue  # a template, not a command
        if all(re.fullmatch(r"[a-z][a-z-]*", w) for w in span.split()[1:]):
            continue  # a sub-command named in prose (`mmsr eval`), not an invocation
        found += _mmsr(span)
    return found


def _mmsr(piece: str) -> list[str]:
    try:
        words = shlex.split(piece, comments=True)
    except ValueError:
        return []
    while words and re.fullmatch(r"[A-Z_][A-Z0-9_]*=.*", words[0]):  # VAR=value mmsr ...
        words = words[1:]
    return [shlex.join(words)] if words[:1] == ["mmsr"] and len(words) > 1 else []


def _cases() -> list[tuple[str, str]]:
    return [(str(doc.relative_to(ROOT)), cmd) for doc in DOCS for cmd in _commands(doc.read_text())]


def test_the_docs_hold_commands_to_check() -> None:
    cases = _cases()
    assert len(cases) > 40
    assert {cmd.split()[1] for _, cmd in cases} >= {"serve", "chat", "train", "bench", "world", "eval"}


@pytest.mark.parametrize(("doc", "command"), _cases())
def test_a_documented_command_parses(doc: str, command: str) -> None:
    words = shlex.split(command)[1:]
    if words[0] in ("--help", "--version"):
        return
    assert words[0] in COMMANDS, f"{doc}: `{command}`: no sub-command {words[0]!r}"
    cmd: Any = load_command(words[0])
    args, name = words[1:], words[0]
    while hasattr(cmd, "get_command") and args and not args[0].startswith("-"):  # a group
        sub = cmd.get_command(None, args[0])
        assert sub is not None, f"{doc}: `{command}`: {name} has no sub-command {args[0]!r}"
        cmd, name, args = sub, args[0], args[1:]
    if "--help" in args:
        return
    try:
        cmd.make_context(name, list(args))
    except Exception as exc:  # typer vendors click: its errors are told apart by class name
        kinds = {k.__name__ for k in type(exc).__mro__}
        if "BadParameter" in kinds and "MissingParameter" not in kinds:
            return  # a placeholder value (a path, a model name) that the reader replaces
        if "UsageError" in kinds:
            pytest.fail(f"{doc}: `{command}`: {exc.format_message()}")  # type: ignore[attr-defined]
        raise


def test_trls_server_mode_is_documented_with_what_image_prompts_need() -> None:
    # TRL's client sends image prompts to routes vLLM (>= 0.30) registers only with --enable-scale-out.
    lines = [
        (str(doc.relative_to(ROOT)), block.replace("\\\n", " "))
        for doc in DOCS
        for block in SHELL_BLOCK.findall(doc.read_text())
    ]
    servers = [
        (doc, cmd)
        for doc, block in lines
        for cmd in block.splitlines()
        if "vllm serve" in cmd and "--weight-transfer-config" in cmd
    ]
    assert servers, "the docs show TRL's server mode"
    for doc, cmd in servers:
        assert "--enable-scale-out" in cmd, f"{doc}: {cmd.strip()}"
