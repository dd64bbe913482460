"""Model backends behind one interface (:class:`ModelBackend`).

- :class:`OpenAIBackend`: any OpenAI-compatible server (``vllm serve``, SGLang), one or many replicas.
- :class:`TransformersBackend`: in-process transformers (CPU or one GPU); imports torch lazily.
- :class:`ScriptedBackend`: the test double, replaying queued turns and recording requests.
"""

from typing import TYPE_CHECKING, Any

from mmsr_serve.backends.base import (
    Completion,
    Delta,
    GenerateRequest,
    ImagePart,
    Message,
    ModelBackend,
    TextPart,
)
from mmsr_serve.backends.scripted import ScriptedBackend

if TYPE_CHECKING:
    from mmsr_serve.backends.hf import TransformersBackend
    from mmsr_serve.backends.openai_http import OpenAIBackend

__all__ = [
    "Completion",
    "Delta",
    "GenerateRequest",
    "ImagePart",
    "Message",
    "ModelBackend",
    "OpenAIBackend",
    "ScriptedBackend",
    "TextPart",
    "TransformersBackend",
]


def __getattr__(name: str) -> Any:
    if name == "OpenAIBackend":
        from mmsr_serve.backends.openai_http import OpenAIBackend

        return OpenAIBackend
    if name == "TransformersBackend":
        from mmsr_serve.backends.hf import TransformersBackend

        return TransformersBackend
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
