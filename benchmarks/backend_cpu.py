"""Client CPU of the model backend per streamed call, against the stand-in model server.

    python benchmarks/backend_cpu.py [--calls 2000] [--concurrency 16] [--repeats 3]

Starts ``mmsr bench standin model`` (answers at once) pinned to CPU 1, and in this process,
pinned to CPU 0, streams ``--calls`` chat completions through :class:`OpenAIBackend` at
``--concurrency``: a text-only call, then one carrying a 300x200 JPEG (sent as its own bytes).
Reports this process's CPU time (user + system) per call, median over ``--repeats``. Run it from
a checkout of each revision to compare wires (the figures are in benchmarks/results/backend_cpu.md).
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import socket
import statistics
import subprocess
import sys
import time
import urllib.request

import numpy as np
from PIL import Image

from mmsr_serve.backends.base import GenerateRequest, ImagePart, Message, TextPart
from mmsr_serve.backends.openai_http import OpenAIBackend
from mmsr_serve.images import decode_image

MODEL = "mmsr-standin"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _photo() -> bytes:
    pixels = (np.random.default_rng(0).random((200, 300, 3)) * 255).astype("uint8")
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, "JPEG", quality=80)
    return out.getvalue()


async def _cpu_per_call(url: str, request: GenerateRequest, calls: int, concurrency: int) -> float:
    backend = OpenAIBackend(url, MODEL)
    gate = asyncio.Semaphore(concurrency)

    async def one() -> None:
        async with gate:
            async for _ in backend.stream(request):
                pass

    await asyncio.gather(*(one() for _ in range(min(200, calls))))  # warm: connections, caches
    started = time.process_time()
    await asyncio.gather(*(one() for _ in range(calls)))
    spent = time.process_time() - started
    await backend.aclose()
    return 1000 * spent / calls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    port = _free_port()
    command = [sys.executable, "-m", "mmsr_serve.cli", "bench", "standin", "model", "--port", str(port)]
    server = subprocess.Popen(
        [*command, "--mix", "direct=1"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        url = f"http://127.0.0.1:{port}/v1"
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(url.removesuffix("/v1") + "/health", timeout=1)
                break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise SystemExit("the stand-in model server did not start") from None
                time.sleep(0.2)
        if hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) >= 2:
            os.sched_setaffinity(server.pid, {1})
            os.sched_setaffinity(0, {0})
        image = decode_image(_photo())
        requests = {
            "text only": GenerateRequest([Message("user", [TextPart("What is this?")])], max_tokens=64),
            "with a 300x200 JPEG": GenerateRequest(
                [Message("user", [ImagePart.of(image), TextPart("What is this?")])], max_tokens=64
            ),
        }
        print(f"{args.calls} calls at concurrency {args.concurrency}, median of {args.repeats}")
        for name, request in requests.items():
            figures = [
                asyncio.run(_cpu_per_call(url, request, args.calls, args.concurrency))
                for _ in range(args.repeats)
            ]
            runs = ", ".join(f"{f:.2f}" for f in figures)
            print(f"{name}: {statistics.median(figures):.2f} ms CPU per call ({runs})")
    finally:
        server.terminate()
        server.wait(timeout=10)


if __name__ == "__main__":
    main()
