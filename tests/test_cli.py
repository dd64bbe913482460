"""The ``mmsr`` command and the package layers: serving stands alone, start-up imports nothing heavy."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mmsr_serve.cli import COMMANDS, app, load_command

ROOT = Path(__file__).resolve().parents[1]
# Packages that `mmsr --help` (and `import mmsr_serve.cli`) must never load.
HEAVY = ("mmsr_train", "mmsr_bench", "torch", "transformers", "trl", "fastapi", "openai", "httpx", "uvicorn")


@pytest.mark.parametrize("name", list(COMMANDS))
def test_each_listed_help_is_the_commands_own(name: str) -> None:
    command = load_command(name)
    assert command.get_short_help_str(limit=200) == COMMANDS[name][1]
    assert hasattr(command, "commands") == (
        name in {"index", "cache", "pack", "world", "train", "bench"}
    )  # groups stay groups


def _heavy_imports_of(args: list[str]) -> tuple[list[str], str]:
    """The heavy packages ``mmsr ARGS`` imports (in a fresh interpreter), and its output."""
    script = (
        "import json, sys\n"
        "from mmsr_serve.cli import app\n"
        "try:\n"
        f"    app({args!r}, prog_name='mmsr')\n"
        "except SystemExit:\n"
        "    pass\n"
        f"print(json.dumps(sorted({{m.split('.')[0] for m in sys.modules}} & set({list(HEAVY)!r}))))\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1]), out.stdout


def test_help_lists_every_command_and_imports_nothing_heavy() -> None:
    heavy, output = _heavy_imports_of(["--help"])
    assert heavy == []
    for name in COMMANDS:
        assert f" {name} " in output


@pytest.mark.parametrize("command", ["serve", "chat"])
def test_the_servers_own_help_imports_nothing_heavy(command: str) -> None:
    # mmsr serve --help took 1.2 s: the api package imported FastAPI and the app for its cli module
    heavy, output = _heavy_imports_of([command, "--help"])
    assert heavy == [] and "Usage" in output


def test_sub_commands_run_through_the_lazy_group(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["cache", "stats", "--cache", str(tmp_path / "none.sqlite")])
    assert "none.sqlite" in result.output
    result = CliRunner().invoke(app, ["world", "--help"])
    assert result.exit_code == 0 and "build" in result.output
    result = CliRunner().invoke(app, ["no-such-command"])
    assert result.exit_code != 0 and "No such command" in result.output


LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"


@pytest.mark.skipif(not LINT_IMPORTS.is_file(), reason="import-linter is not installed")
def test_the_import_contract_holds() -> None:
    """pyproject.toml's layers: mmsr_train > mmsr_bench > mmsr_serve (docs/architecture.md)."""
    out = subprocess.run([str(LINT_IMPORTS)], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "1 kept, 0 broken" in out.stdout


def test_version() -> None:
    from mmsr_serve import __version__

    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0 and result.output.strip() == f"mmsr {__version__}"
