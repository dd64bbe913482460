"""The measurement behind the local image search's hash design and distance cut-off.

Not a test (pytest does not collect it); run it after changing ``mmsr_serve/search/_image_index.py``
and update the numbers in that module's docstring::

    python -m tests.search.hash_study [--images 200] [--unrelated 500]

It draws corpus images with the test fixture's generator, makes copies of each (uneven crop,
rescale, JPEG re-encode) at several crop levels, and reports the distance from each copy to its
original, whether the original ranked first, and the distance from unrelated images (other
drawings, noise, flat and gradient images) to their nearest corpus image.
"""

from __future__ import annotations

import argparse
import random
import time

import numpy as np
from PIL import Image

from mmsr_serve.search import _image_index as ii
from tests.corpus_fixture import draw_image, variant

SIZES = ([280, 320, 400, 640], [220, 240, 300, 480])


def _drawings(first_seed: int, n: int, rng: random.Random) -> list[Image.Image]:
    return [draw_image(first_seed + s, (rng.choice(SIZES[0]), rng.choice(SIZES[1]))) for s in range(n)]


def _synthetic() -> list[Image.Image]:
    noise = [
        Image.fromarray(np.random.default_rng(s).integers(0, 255, (240, 320, 3), dtype=np.uint8))
        for s in range(5)
    ]
    flat = [Image.new("RGB", (320, 240), grey) for grey in [(0, 0, 0), (255, 255, 255), (128, 128, 128)]]
    ramp = Image.linear_gradient("L").convert("RGB").resize((320, 240))
    return noise + flat + [ramp.rotate(angle) for angle in (0, 90, 45)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--unrelated", type=int, default=500)
    args = parser.parse_args()
    rng = random.Random(11)
    corpus = _drawings(200, args.images, rng)
    start = time.perf_counter()
    hashes = np.stack([ii.signatures(img, ii.CORPUS_CROPS) for img in corpus])
    build_ms = (time.perf_counter() - start) / len(corpus) * 1000
    print(f"{len(ii.CORPUS_CROPS)} corpus crops x {len(ii.QUERY_CROPS)} query crops, {ii.HASH_BITS} bits")
    print(f"hashing: {build_ms:.1f} ms per corpus image")
    copies = []
    for crop in (0.0, 0.03, 0.05, 0.08, 0.10, 0.12):
        dists, first = [], 0
        for i, img in enumerate(corpus):
            copy = variant(img, crop=crop, scale=rng.uniform(0.3, 1.0), quality=rng.randint(40, 90), seed=i)
            d = ii.min_distances(ii.signatures(copy, ii.QUERY_CROPS), hashes)
            dists.append(d[i])
            first += int(d.argmin() == i)
        m = np.array(dists)
        copies.append((crop, m))
        print(
            f"crop {crop:4.0%}: original first {first}/{len(m)}; distance to it "
            f"mean {m.mean():.1f} p99 {np.percentile(m, 99):.0f} max {m.max()}"
        )
    drawings = _drawings(90000, args.unrelated, rng)
    start = time.perf_counter()
    unrel = np.array([ii.min_distances(ii.signatures(img, ii.QUERY_CROPS), hashes).min() for img in drawings])
    query_ms = (time.perf_counter() - start) / len(drawings) * 1000
    synth = [int(ii.min_distances(ii.signatures(img, ii.QUERY_CROPS), hashes).min()) for img in _synthetic()]
    print(f"query: {query_ms:.1f} ms against {len(corpus)} images")
    print(
        f"unrelated drawings: min {unrel.min()} p1 {np.percentile(unrel, 1):.0f} "
        f"p5 {np.percentile(unrel, 5):.0f}; noise/flat/gradients: {synth}"
    )
    cropped = np.concatenate([m for crop, m in copies if 0.05 <= crop <= 0.10])
    for cut in range(20, 36, 2):
        print(
            f"cut-off {cut}: copies cropped 5-10% kept {np.mean(cropped <= cut):.3f}, "
            f"unrelated drawings passing {np.mean(unrel <= cut):.3f}"
        )


if __name__ == "__main__":
    main()
