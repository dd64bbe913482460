"""Start-up mistakes are one sentence, before anything loads: a port in use, a missing corpus,
a checkpoint path that is not there."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mmsr_serve.api import Settings, create_app
from mmsr_serve.api.cli import check_port
from mmsr_serve.cli import app
from mmsr_serve.errors import ConfigError


def test_a_port_in_use_is_named() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(ConfigError, match=f"cannot listen on 127.0.0.1:{port}: .*--port"):
            check_port("127.0.0.1", port)
    check_port("127.0.0.1", port)  # free again


def test_a_missing_or_wrong_corpus_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such folder"):
        create_app(Settings(model="m", index=tmp_path / "nowhere"))
    with pytest.raises(ConfigError, match=r"not a corpus folder \(no docs\.jsonl"):
        create_app(Settings(model="m", index=tmp_path))


def test_a_checkpoint_path_that_is_not_there_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no checkpoint folder there"):
        Settings(model=str(tmp_path / "ckpt"), backend="hf").build_backend()
    with pytest.raises(ConfigError, match=r"no config\.json"):
        Settings(model=str(tmp_path), backend="hf").build_backend()


def test_the_cli_says_it_in_one_sentence(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app,
        ["serve", "--model", "m", "--backend-url", "http://127.0.0.1:9/v1", "--index", str(tmp_path / "x")],
    )
    flat = "".join(result.output.replace("│", "").split())  # the error box wraps long lines
    assert result.exit_code == 2 and "nosuchfolder" in flat
    assert "Traceback" not in result.output


def test_mmsr_chat_names_the_url_and_suggests_v1(corpus_dir: Path) -> None:
    from mmsr_serve.backends import ScriptedBackend
    from tests.api.live import serve_in_thread

    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        nobody = f"http://127.0.0.1:{closed.getsockname()[1]}/v1"
    unreachable = CliRunner().invoke(app, ["chat", "hi", "--url", nobody, "--timeout", "5"])
    assert unreachable.exit_code == 1 and f"cannot reach {nobody}" in unreachable.output
    server = create_app(Settings(model="m", index=corpus_dir), backend=ScriptedBackend([]))
    with serve_in_thread(server) as live:
        no_v1 = CliRunner().invoke(app, ["chat", "hi", "--url", live.url, "--timeout", "5"])
    assert no_v1.exit_code == 1 and f"the base URL usually ends in /v1: {live.url}/v1" in no_v1.output
