"""A model backend that plays a generated world the way a well-trained policy would.

It knows the facts of the world's *known* entities (it recognises their question views by their
pixels) and answers those directly. For any other entity it runs the protocol for real: image
search, then a text search for the first image result's title and the asked field, then the value
it reads in the text results. In ``off`` mode (no protocol prompt) it answers known facts and says
it does not know the rest. Its replies depend only on the conversation, so concurrent runs are safe.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import AsyncIterator, Iterable

from PIL import Image

from mmsr_bench.world import KINDS
from mmsr_bench.world.questions import Question
from mmsr_serve.backends.base import Completion, Delta, GenerateRequest, ModelBackend

REASON = "<reason>thinking</reason>"
PHRASINGS = sorted(
    ((phrasing, a.key) for kind in KINDS.values() for a in kind.attributes for phrasing in a.questions),
    key=lambda item: -len(item[0]),
)


def pixels_digest(image: Image.Image) -> str:
    return hashlib.sha1(image.convert("RGB").tobytes()).hexdigest()


def field_asked(text: str) -> str:
    return next(key for phrasing, key in PHRASINGS if phrasing in text)


class WorldOracle(ModelBackend):
    model = "oracle"

    def __init__(self, questions: Iterable[Question]) -> None:
        self.known: dict[tuple[str, str], str] = {}
        for q in questions:
            if q.known and q.image:
                with Image.open(q.image) as img:
                    self.known[(pixels_digest(img), q.attribute)] = q.answers[0]

    def reply(self, request: GenerateRequest) -> str:
        first = next(m for m in request.messages if m.role == "user")
        key = field_asked(first.text)
        fact = self.known.get((pixels_digest(first.images[0]), key)) if first.images else None
        if "<reason>" not in first.text:  # off: no protocol prompt
            return fact or "I do not know."
        last = request.messages[-1].text
        info = (
            last.split("<information>", 1)[-1].split("</information>", 1)[0]
            if "<information>" in last
            else ""
        )
        value = re.search(rf"\b{key}: (\w+)", info)
        title = re.search(r"Title: (\w+)", info)
        if value:
            return f"{REASON}<answer>{value.group(1)}</answer>"
        if title:
            return f"{REASON}<text_search>{title.group(1)} {key}</text_search>"
        if fact and not info:
            return f"{REASON}<answer>{fact}</answer>"
        if not info and first.images:
            return f"{REASON}<search><img></search>"
        return f"{REASON}<answer>unknown</answer>"

    async def stream(self, request: GenerateRequest) -> AsyncIterator[Delta | Completion]:
        text = self.reply(request)
        yield Delta(text)
        yield Completion(text, "stop", prompt_tokens=10, completion_tokens=len(text.split()))
