"""Turning the question and search results into user turns, with the pack's texts.

A results turn is the pack's ``results_message`` around the hits: its kind's header, then each
hit's template, separated by its kind's separator. An image hit's thumbnail is an image part at
the ``<image>`` marker of ``image_result`` (before the hit's text when the template has none);
text hits are summaries with their links. A failed or empty search still produces a turn,
telling the model what happened, so it can reason on (a pack may give a failed search a whole
turn of its own: ``image_search_failed_turn`` / ``text_search_failed_turn``).
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
    own = pack.image_search_failed_turn if record.kind == "image" else pack.text_search_failed_turn
    if record.error is not None and own is not None:
        template = "image_search_failed_turn" if record.kind == "image" else "text_search_failed_turn"
        return Message.of("user", pack.render(template, error=record.error, question=question))
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
    image = record.kind == "image"
    header = pack.render("image_results_header" if image else "text_results_header", count=len(record.hits))
    if not record.hits:
        return [TextPart(header), TextPart(pack.render("no_results", kind=kind))]
    separator = pack.image_result_separator if image else pack.text_result_separator
    parts: list[Part] = [TextPart(header)]
    for index, hit in enumerate(record.hits, start=1):
        if index > 1:
            parts.append(TextPart(separator))
        if isinstance(hit, ImageHit):
            text = pack.render("image_result", index=index, title=hit.title, url=hit.url)
            before, marked, after = text.partition(IMAGE_MARKER)
            if not marked:
                before, after = "", text
            thumbnail = hit.decoded_thumbnail()
            parts += [TextPart(before), *([ImagePart.of(thumbnail)] if thumbnail else []), TextPart(after)]
        elif isinstance(hit, TextHit):
            parts.append(
                TextPart(pack.render("text_result", index=index, title=hit.title, url=hit.url, text=hit.text))
            )
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
