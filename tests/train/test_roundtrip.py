"""Train -> serve: ``mmsr train tiny-model``, two GRPO steps on a JSONL set (``mmsr train grpo``), then
the server built by ``mmsr serve --backend hf --model <output>`` answers an OpenAI request with the
pack the checkpoint was trained with, and no extra flag."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image
from typer.testing import CliRunner

from mmsr_serve.agent.prompts import default_pack
from mmsr_serve.api import Settings, create_app
from mmsr_serve.cli import app
from tests.corpus_fixture import read_docs, variant


def write_set(folder: Path, corpus: Path, rows: list[dict[str, Any]]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    lines = []
    for i, doc in enumerate(rows):
        with Image.open(corpus / doc["image"]) as image:
            variant(image, seed=i).save(folder / f"{i}.jpg")
        designer = doc["text"].split("designed by ")[1].split(" and")[0]
        lines.append(
            json.dumps({"image": f"{i}.jpg", "question": "Who designed this?", "answers": [designer]})
        )
    (folder / "set.jsonl").write_text("\n".join(lines) + "\n")
    return folder / "set.jsonl"


@pytest.mark.slow
async def test_train_then_serve(tmp_path: Path, corpus: Path) -> None:
    runner = CliRunner()
    tiny = tmp_path / "tiny"
    result = runner.invoke(app, ["train", "tiny-model", str(tiny)])
    assert result.exit_code == 0, result.output
    docs = [d for d in read_docs(corpus) if d.get("image")]
    train = write_set(tmp_path / "train", corpus, docs[:2])
    held = write_set(tmp_path / "held", corpus, docs[2:3])
    pack = {**default_pack().to_dict(), "name": "roundtrip", "after_text_search": "Now answer."}
    (tmp_path / "pack.json").write_text(json.dumps(pack))
    out = tmp_path / "out"
    args = ["train", "grpo", "--model", str(tiny), "--train-data", str(train), "--eval-data", str(held)]
    args += ["--output-dir", str(out), "--index", str(corpus), "--prompt-pack", str(tmp_path / "pack.json")]
    args += ["--num-generations", "2", "--max-steps", "2", "--eval-steps", "2", "--save-steps", "1"]
    args += ["--max-tokens", "12", "--max-total-tokens", "400", "--device", "cpu"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "trained 2 steps" in result.output and f"--model {out}" in result.output
    for folder in (out, out / "checkpoint-1"):
        names = {p.name for p in folder.iterdir()}
        assert {"model.safetensors", "config.json", "processor_config.json", "prompt_pack.json"} <= names
        assert json.loads((folder / "prompt_pack.json").read_text())["name"] == "roundtrip"
    state = json.loads((out / "checkpoint-2" / "trainer_state.json").read_text())
    assert any("eval_reward" in entry for entry in state["log_history"])  # evaluated on the held-out set

    settings = Settings.load(None, env={}, backend="hf", model=str(out), device="cpu", index=corpus)
    server = create_app(settings)
    assert server.state.runtime.agent.pack.name == "roundtrip"
    transport = httpx.ASGITransport(app=server)
    async with httpx.AsyncClient(transport=transport, base_url="http://mmsr.test", timeout=60) as client:
        body = {
            "model": out.name,
            "messages": [{"role": "user", "content": "Who designed it?"}],
            "max_tokens": 8,
        }
        response = await client.post("/v1/chat/completions", json=body)
    assert response.status_code == 200, response.text
    data = response.json()
    assert data["object"] == "chat.completion" and data["model"] == out.name
    assert data["choices"][0]["finish_reason"] in ("stop", "length", "max_turns")
