"""The release's glue between turns: a checkpoint's chat template without the newline after an
assistant turn's <|im_end|>, and nothing else changed."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jinja2
import pytest
from typer.testing import CliRunner

from mmsr_serve import default_model
from mmsr_serve.agent.glue import checkpoint_template, release_glue
from mmsr_serve.agent.pack_cli import pack_app
from mmsr_serve.errors import ConfigError

# A ChatML template written as template text (a line break after <|im_end|>), in our own words.
TEXT_FORM = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}<|im_end|>\n"
    "{% else %}{% for part in message['content'] %}{% if part['type'] == 'text' %}{{ part['text'] }}"
    "{% else %}<|vision_start|><|image_pad|><|vision_end|>{% endif %}{% endfor %}<|im_end|>\n"
    "{% endif %}{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
MESSAGES: list[dict[str, Any]] = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": [{"type": "text", "text": "Who built it? "}, {"type": "image"}]},
    {"role": "assistant", "content": "<reason>Unknown.</reason><search><img></search>"},
    {
        "role": "user",
        "content": [{"type": "text", "text": "Results: "}, {"type": "image"}, {"type": "text", "text": "1"}],
    },
]


def render(template: str, messages: list[dict[str, Any]]) -> str:
    env = jinja2.Environment(trim_blocks=True, lstrip_blocks=True)  # as transformers renders them
    return env.from_string(template).render(messages=messages, add_generation_prompt=True)


TEMPLATES = [TEXT_FORM, checkpoint_template(default_model.CHECKPOINT)]


@pytest.mark.parametrize("template", TEMPLATES, ids=["text", "literal"])
def test_only_the_newline_after_assistant_turns_goes(template: str) -> None:
    before, after = render(template, MESSAGES), render(release_glue(template), MESSAGES)
    turn = MESSAGES[2]["content"] + "<|im_end|>"
    assert before.replace(turn + "\n", turn) == after
    assert turn + "<|im_start|>user\n" in after and after.count("<|im_end|>\n") == 3
    # the release's rollout: the model's turn ends at <|im_end|>, the results turn follows at once
    prompt = render(template, MESSAGES[:2])
    results = render(template, MESSAGES[3:])
    assert after == prompt + turn + results


def test_a_template_without_chatml_ends_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="nothing to change"):
        release_glue("{% for m in messages %}{{ m['content'] }}{% endfor %}")
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({"chat_template": TEXT_FORM}))
    assert checkpoint_template(tmp_path) == TEXT_FORM
    with pytest.raises(ConfigError, match="no chat template"):
        checkpoint_template(tmp_path / "nothing")


def test_mmsr_pack_chat_template(tmp_path: Path) -> None:
    out = tmp_path / "glue.jinja"
    result = CliRunner().invoke(pack_app, ["chat-template", str(default_model.CHECKPOINT), str(out)])
    assert result.exit_code == 0, result.output
    assert out.read_text() == release_glue(checkpoint_template(default_model.CHECKPOINT))
    assert "--chat-template" in result.output
