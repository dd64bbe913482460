"""A checkpoint's chat template, changed to put nothing between an assistant turn's end and the
next turn, as the release's rollout did.

ChatML templates (Qwen2.5-VL's among them) end every message with ``<|im_end|>`` and a newline.
The release's rollout appended each results turn right after the model's own ``<|im_end|>``
token, so the released checkpoint never saw that newline after its turns. :func:`release_glue`
rewrites the checkpoint's own template (read from the user's checkpoint, not shipped here) so
that assistant messages end at ``<|im_end|>``; every other message keeps its newline. Serve with
``vllm serve CKPT --chat-template OUT.jinja`` (docs/official-checkpoint.md).

Both ways a template writes the end are handled: as a string literal (``'<|im_end|>\\n'``) and
as template text (``<|im_end|>`` then a line break). A template that writes it otherwise is a
:class:`ConfigError`: there is nothing this can safely change.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from mmsr_serve.errors import ConfigError

END = "<|im_end|>"
_LITERAL = re.compile(r"""(['"])<\|im_end\|>\\n\1""")
_TEXT = re.compile(r"<\|im_end\|>\n")
_ASSISTANT = "message['role'] == 'assistant'"


def release_glue(template: str) -> str:
    """``template`` with no newline after an assistant message's ``<|im_end|>``."""
    changed, literals = _LITERAL.subn(lambda m: f"('{END}' if {_ASSISTANT} else {m.group(0)})", template)
    # an expression, not {% if %}...: a template rendered with trim_blocks would drop that line break
    changed, texts = _TEXT.subn(END + "{{ '' if " + _ASSISTANT + " else '\\n' }}", changed)
    if literals + texts == 0:
        raise ConfigError(f"the chat template never writes {END} and a newline: nothing to change")
    return changed


def checkpoint_template(folder: str | Path) -> str:
    """The chat template a checkpoint folder carries (``chat_template.jinja``,
    ``chat_template.json`` or ``tokenizer_config.json``)."""
    root = Path(folder)
    jinja = root / "chat_template.jinja"
    if jinja.is_file():
        return jinja.read_text(encoding="utf-8")
    for name in ("chat_template.json", "tokenizer_config.json"):
        path = root / name
        if path.is_file():
            try:
                template = json.loads(path.read_text(encoding="utf-8")).get("chat_template")
            except (ValueError, AttributeError) as exc:
                raise ConfigError(f"cannot read {path}: {exc}") from exc
            if isinstance(template, str):
                return template
    files = "chat_template.jinja, chat_template.json, tokenizer_config.json"
    raise ConfigError(f"{root}: no chat template ({files})")
