"""The local image index's query cost on a corpus of 100,000 images (one core).

    python benchmarks/image_index.py [--images 100000] [--repeats 7]

A corpus of random signatures (every image stored under the 16 corpus crops) with a few planted
near-copies of the query, scanned by :class:`SignatureTable` (the index's scan) and by the
broadcast formulation it replaced, written out here for the comparison; both must return the same
distances. Also timed: hashing the query (a 672x672 picture under the 6 query crops) and building
the table when the index is loaded. Medians over the repeats; writes OUT/image_index.md.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

from mmsr_serve.search import _image_index as ix


def broadcast_scan(query: np.ndarray, corpus: np.ndarray, chunk: int = 4096) -> np.ndarray:
    """The scan before SignatureTable: (N, crops, query crops, words) at once, per chunk."""
    out = np.empty(len(corpus), dtype=np.int64)
    q = np.ascontiguousarray(query).view(np.uint64)[None, None, :, :]
    words = np.ascontiguousarray(corpus).view(np.uint64)
    for start in range(0, len(corpus), chunk):
        block = words[start : start + chunk, :, None, :]
        bits = np.bitwise_count(np.bitwise_xor(block, q)).sum(axis=-1, dtype=np.int64)
        out[start : start + len(block)] = bits.min(axis=(1, 2))
    return out


def _median_s(fn: object, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()  # type: ignore[operator]
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    picture = Image.fromarray(rng.integers(0, 256, (672, 672, 3), dtype=np.uint8)).resize((672, 672))
    query = ix.signatures(picture, ix.QUERY_CROPS)
    corpus = rng.integers(0, 256, (args.images, len(ix.CORPUS_CROPS), ix.HASH_BYTES), dtype=np.uint8)
    planted = rng.choice(args.images, 5, replace=False)
    for n, i in enumerate(planted):  # near-copies: a query crop with n * 3 bits flipped
        copy = np.unpackbits(query[n % len(query)])
        copy[rng.choice(ix.HASH_BITS, n * 3, replace=False)] ^= 1
        corpus[i, n % len(ix.CORPUS_CROPS)] = np.packbits(copy)
    table = ix.SignatureTable(corpus)
    found = table.min_distances(query)
    assert (found == broadcast_scan(query, corpus)).all(), "the two scans disagree"
    assert set(np.argsort(found, kind="stable")[:5]) == set(planted), "the near-copies are not the nearest"
    load = os.getloadavg()[0]
    figures = {
        "scan (SignatureTable)": _median_s(lambda: table.min_distances(query), args.repeats),
        "scan (broadcast, before)": _median_s(lambda: broadcast_scan(query, corpus), args.repeats),
        "hash the query (672x672, 6 crops)": _median_s(
            lambda: ix.signatures(picture, ix.QUERY_CROPS), args.repeats
        ),
        "build the table (index load)": _median_s(lambda: ix.SignatureTable(corpus), args.repeats),
    }
    lines = [
        f"# Local image index: one query on {args.images:,} images",
        "",
        "```",
        "python benchmarks/image_index.py " + " ".join(sys.argv[1:]),
        "```",
        "",
        f"{os.cpu_count()} CPUs, load average {load:.2f}; numpy {np.__version__}; medians of {args.repeats}; "
        f"{len(ix.CORPUS_CROPS)} stored crops per image, {len(ix.QUERY_CROPS)} query crops, "
        f"{ix.HASH_BITS}-bit signatures. Both scans return the same distances (checked), and the 5 "
        "planted near-copies come first.",
        "",
        "| step | ms |",
        "|---|---:|",
        *(f"| {name} | {1000 * seconds:.1f} |" for name, seconds in figures.items()),
        "",
        f"Scan speed-up: {figures['scan (broadcast, before)'] / figures['scan (SignatureTable)']:.1f}x. "
        f"Table memory: {args.images * len(ix.CORPUS_CROPS) * ix.HASH_BYTES / 2**20:.0f} MiB.",
    ]
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "image_index.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
