"""The whole runtime in-process: local index over a corpus with images, a scripted model that
does image search -> text search -> answer, and a query image that is not byte-identical."""

from pathlib import Path

from PIL import Image

from mmsr_serve import SearchAgent
from mmsr_serve.backends import ImagePart, ScriptedBackend, TextPart
from mmsr_serve.images import encode_image
from mmsr_serve.search import LocalIndex
from tests.corpus_fixture import read_docs, variant


async def test_image_search_then_text_search_then_answer(corpus_dir: Path) -> None:
    docs = read_docs(corpus_dir)
    target = docs[5]
    assert "image" in target
    with Image.open(corpus_dir / target["image"]) as original:
        query_image = encode_image(variant(original.convert("RGB"), seed=3), "JPEG")
    title = target["title"]
    backend = ScriptedBackend(
        [
            "<reason>I do not know this object; let me search the image.</reason><search><img></search>",
            f"<reason>The results show {title}.</reason><text_search>{title} designer</text_search>",
            "<reason>The page names the designer.</reason><answer>the designer</answer>",
        ]
    )
    agent = SearchAgent(backend, search=LocalIndex(corpus_dir))

    result = await agent.run("Who designed this?", image=query_image)

    assert (result.answer, result.finish_reason) == ("the designer", "stop")
    assert result.search_calls == {"image": 1, "text": 1}
    image_search, text_search = result.searches
    assert image_search.error is None and text_search.error is None
    assert image_search.hits[0].url == target["url"]
    assert text_search.hits[0].url == target["url"]
    assert text_search.query == f"{title} designer"

    # the second model request carries the thumbnails and titles as image and text parts
    after_image = backend.requests[1].messages[-1]
    assert after_image.role == "user"
    assert len(after_image.images) == len(image_search.hits) >= 1
    first_image = next(i for i, p in enumerate(after_image.content) if isinstance(p, ImagePart))
    following = after_image.content[first_image + 1]
    assert isinstance(following, TextPart) and following.text.startswith(f"1. Title: {title}")

    # the third carries the text extract with its link
    after_text = backend.requests[2].messages[-1]
    assert after_text.images == []
    assert f"1. {title} ({target['url']})" in after_text.text
    designer = target["text"].split("designed by ")[1].split(" and")[0]
    assert designer in after_text.text

    assert target["url"] in result.citations
    assert result.citations[0] == target["url"]
