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


async def test_a_shared_directory_serves_every_processs_images(tmp_path: pytest.TempPathFactory) -> None:
    # Two publishers on one directory stand for two workers: either one serves what the other published.
    import os
    from pathlib import Path

    shared = Path(str(tmp_path)) / "published"
    image = await load_image(encode_image(Image.new("RGB", (64, 48), (200, 10, 10))))
    one, other = (
        ImagePublisher("https://gw.example", ttl_s=10, max_images=2, directory=shared) for _ in "ab"
    )
    token, url = one.publish(image)
    served = other.get(f"{token}.jpg")
    assert served is not None and served[:2] == b"\xff\xd8" and url.endswith(f"{token}.jpg")
    other.revoke(token)
    assert one.get(f"{token}.jpg") is None
    first, _ = one.publish(image)
    other.publish(image)
    one.publish(image)  # a third: the oldest is dropped
    assert one.get(f"{first}.jpg") is None and len(other) == 2
    (kept,) = [p for p in shared.glob("*.jpg")][:1]
    old = kept.stat().st_mtime - 11
    os.utime(kept, (old, old))  # expired
    assert other.get(kept.name) is None and not kept.exists() and len(one) == 1
    for name in ("../x.jpg", "..%2Fx.jpg", ".jpg", f"{'a' * 42}/.jpg"):
        assert one.get(name) is None
    assert not [p for p in shared.iterdir() if p.name.endswith(".part")]  # no half-written files left
