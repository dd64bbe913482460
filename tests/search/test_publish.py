"""Publishing uploaded images at unguessable, expiring URLs (the route: tests/api/test_web_search.py)."""

from __future__ import annotations

import time

import pytest
from PIL import Image

from mmsr_serve.images import encode_image, load_image
from mmsr_serve.search.publish import PUBLIC_IMAGE_PATH, ImagePublisher


async def test_tokens_are_unguessable_and_entries_expire(monkeypatch: pytest.MonkeyPatch) -> None:
    image = await load_image(encode_image(Image.new("RGB", (900, 900), (9, 9, 9))))
    publisher = ImagePublisher("https://gw.example/", ttl_s=10, max_images=2)
    token, url = publisher.publish(image)
    assert url == f"https://gw.example{PUBLIC_IMAGE_PATH}{token}.jpg" and len(token) >= 43
    assert publisher.publish(image)[0] != token
    served = publisher.get(f"{token}.jpg")
    assert served is not None and served[:2] == b"\xff\xd8"  # a JPEG of the bounded image
    assert (await load_image(served)).size == image.size != (900, 900)
    publisher.publish(image)  # a third: the oldest is dropped
    assert publisher.get(f"{token}.jpg") is None and len(publisher) == 2
    now = time.monotonic()
    monkeypatch.setattr(time, "monotonic", lambda: now + 11)
    assert len(publisher) == 0
    with pytest.raises(ValueError):
        ImagePublisher("gw.example")
