"""The model backend interface: a chat request in, streamed text and one final completion out.

Backends take :class:`Message` lists whose content parts are text or decoded PIL images, so the
agent loop never deals with wire formats. A backend returns the generated text *including* the
stop string that ended it when it knows it; the loop restores a stripped closing tag otherwise.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Literal

from PIL import Image

from mmsr_serve.images import EncodedImage, InputImage

Role = Literal["system", "user", "assistant"]
FinishReason = Literal["stop", "length"]


@dataclass(frozen=True)
class TextPart:
    text: str


@dataclass(frozen=True, eq=False)
class ImagePart:
    """An image in a message. ``encoded``: bytes that decode to exactly ``image``, when known.

    ``wire`` is where a remote backend keeps the part's encoded form (by format) once it made it:
    the same part goes out at every turn of a run, encoded once.
    """

    image: Image.Image
    encoded: EncodedImage | None = field(default=None, repr=False)
    wire: dict[str, str] = field(default_factory=dict, repr=False)

    @classmethod
    def of(cls, image: InputImage) -> ImagePart:
        return cls(image.image, image.encoded)


Part = TextPart | ImagePart


@dataclass
class Message:
    role: Role
    content: list[Part]

    @classmethod
    def of(cls, role: Role, *parts: str | Image.Image | Part) -> Message:
        content: list[Part] = []
        for part in parts:
            if isinstance(part, str):
                content.append(TextPart(part))
            elif isinstance(part, Image.Image):
                content.append(ImagePart(part))
            else:
                content.append(part)
        return cls(role, content)

    @property
    def text(self) -> str:
        return "".join(p.text for p in self.content if isinstance(p, TextPart))

    @property
    def images(self) -> list[Image.Image]:
        return [p.image for p in self.content if isinstance(p, ImagePart)]


@dataclass(frozen=True)
class GenerateRequest:
    messages: Sequence[Message]
    max_tokens: int = 2048
    temperature: float | None = None
    top_p: float | None = None
    seed: int | None = None
    stop: tuple[str, ...] = ()
    # vLLM's sampling extras (transformers' generate takes them too); None: the model's default
    top_k: int | None = None
    min_p: float | None = None
    repetition_penalty: float | None = None


@dataclass(frozen=True)
class Delta:
    """A piece of generated text, streamed as it arrives."""

    text: str


@dataclass(frozen=True)
class Completion:
    """The end of one generation. ``text`` is the whole turn; token counts are None when unknown."""

    text: str
    finish_reason: FinishReason
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    extra: dict[str, object] = field(default_factory=dict)


class ModelBackend(ABC):
    """One model behind a small async interface. Subclasses implement :meth:`stream`."""

    model: str = "model"
    keeps_stop_strings: bool = False
    """True when the returned text always holds the stop string that ended it (generation in
    process). The loop then never restores a closing tag: a turn that ended on end-of-sequence
    with an open tag is malformed, not a stripped stop (which a remote server may do)."""

    @abstractmethod
    def stream(self, request: GenerateRequest) -> AsyncIterator[Delta | Completion]:
        """Yield :class:`Delta` pieces, then exactly one :class:`Completion` as the last item."""

    async def generate(self, request: GenerateRequest) -> Completion:
        async for item in self.stream(request):
            if isinstance(item, Completion):
                return item
        raise RuntimeError(f"{type(self).__name__}.stream ended without a Completion")

    async def check_ready(self) -> None:
        """Raise :class:`~mmsr_serve.errors.BackendError` if the backend cannot serve now."""

    async def aclose(self) -> None:
        """Release connections, threads or weights."""
