"""Turning the question and search results into user turns, with the pack's texts.

Image results are interleaved as image parts: thumbnail, its title, next thumbnail...; text
results are numbered summaries with their links. A failed or empty search still produces a turn,
telling the model what happened, so it can reason on.
"""

from __future__ import annotations

from mmsr_serve.agent.events import SearchRecord
from mmsr_serve.agent.limits import Limits
from mmsr_serve.agent.prompts import IMAGE_MARKER, PromptPack
from mmsr_serve.backends.base import ImagePart, Message, Part, TextPart
from mmsr_serve.images import InputImage
from mmsr_serve.search.base import ImageHit, TextHit


def first_turn(pack: PromptPack, question: str, image: InputImage | None, limits: Limits) -> Message:
    values = {
        "question": question,
        "max_image_searches": limits.max_image_searches,
        "max_text_searches": limits.max_text_searches,
    }
    if image is None:
        return Message.of("user", pack.render("first_turn_text_only", **values))
    before, _, after = pack.render("first_turn", **values).partition(IMAGE_MARKER)
    return _user_turn([TextPart(before), ImagePart.of(image), TextPart(after)])


def results_turn(pack: PromptPack, record: SearchRecord, question: str) -> Message:
    follow_up = pack.render(
        "after_image_search" if record.kind == "image" else "after_text_search", question=question
    )
    wrapper = pack.render("results_message", question=question, follow_up=follow_up)
    before, _, after = wrapper.partition("{results}")
    return _user_turn([TextPart(before), *_result_parts(pack, record), TextPart(after)])


def _result_parts(pack: PromptPack, record: SearchRecord) -> list[Part]:
    kind = "image" if record.kind == "image" else "web"
    if record.error is not None:
        return [TextPart(pack.render("search_failed", kind=kind, error=record.error))]
    if not record.hits:
        return [TextPart(pack.render("no_results", kind=kind))]
    parts: list[Part] = []
    for index, hit in enumerate(record.hits, start=1):
        sep = "\n" if index > 1 else ""
        if isinstance(hit, ImageHit):
            thumbnail = hit.decoded_thumbnail()
            if thumbnail is not None:
                parts += [TextPart(sep), ImagePart.of(thumbnail)]
                sep = ""
            parts.append(
                TextPart(sep + pack.render("image_result", index=index, title=hit.title, url=hit.url))
            )
        elif isinstance(hit, TextHit):
            text = pack.render("text_result", index=index, title=hit.title, url=hit.url, text=hit.text)
            parts.append(TextPart(("\n\n" if index > 1 else "") + text))
    return parts


def _user_turn(parts: list[Part]) -> Message:
    """Merge adjacent text parts and drop empty ones, so backends see clean part lists."""
    merged: list[Part] = []
    for part in parts:
        if isinstance(part, TextPart):
            if not part.text:
                continue
            if merged and isinstance(merged[-1], TextPart):
                merged[-1] = TextPart(merged[-1].text + part.text)
                continue
        merged.append(part)
    return Message("user", merged)
