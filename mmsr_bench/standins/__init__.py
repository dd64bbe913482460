"""Stand-in servers for load benchmarks: the model and the web, without GPUs or search providers.

- :mod:`~mmsr_bench.standins.model`: a vLLM-shaped OpenAI-compatible server that plays the search
  protocol from the conversation alone (direct answer, image search, text search, in a seeded
  mix), honours ``stop`` / ``stop_reason`` / ``max_tokens`` / streaming as vLLM does, and waits a
  configurable time to the first token and per token. ``mmsr serve --backend openai`` runs on it.
- :mod:`~mmsr_bench.standins.web`: a SearXNG-shaped search provider (``--text-search searxng``)
  whose hits link to HTML pages it serves itself, for mmsr's local page reader.

Both report their load at ``GET /standin/stats`` (counters, requests in flight, event-loop lag and
``saturated``: its p99 over 10 ms, the stand-in itself was then slowing the run) and zero it at
``POST /standin/reset`` (call it just before a measured run). Latencies are written as
:mod:`~mmsr_bench.standins.latency` strings (``50ms``, ``lognormal:50ms:0.5`` ...).

:func:`serve_standin` runs one in a thread of the calling process, which is right for tests; a
load benchmark should give each stand-in its own process (the command line below), since a thread
shares the caller's interpreter lock and its lag then includes the caller's work.

    with serve_standin(model_app(ModelConfig(latency="exp:40ms", tokens_per_s=80))) as model_url, \\
         serve_standin(web_app(WebConfig(latency="120ms"))) as web_url:
        ...  # mmsr serve --backend-url {model_url}/v1 --text-search searxng (SEARXNG_BASE_URL={web_url})

In the foreground: ``mmsr bench standin model --port 8001`` and ``mmsr bench standin web``
(:mod:`~mmsr_bench.standins.cli`). Names are imported on first use, so the command line only
loads typer until it runs.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mmsr_bench.standins._serve import serve_standin
    from mmsr_bench.standins.latency import Latency, parse_latency
    from mmsr_bench.standins.model import ModelConfig, ModelStandIn, model_app
    from mmsr_bench.standins.play import Mix, parse_mix
    from mmsr_bench.standins.web import WebConfig, WebStandIn, web_app

__all__ = [
    "Latency",
    "Mix",
    "ModelConfig",
    "ModelStandIn",
    "WebConfig",
    "WebStandIn",
    "model_app",
    "parse_latency",
    "parse_mix",
    "serve_standin",
    "web_app",
]

_HOMES = {
    "serve_standin": "_serve",
    "Latency": "latency",
    "parse_latency": "latency",
    "ModelConfig": "model",
    "ModelStandIn": "model",
    "model_app": "model",
    "Mix": "play",
    "parse_mix": "play",
    "WebConfig": "web",
    "WebStandIn": "web",
    "web_app": "web",
}


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_HOMES[name]}"), name)
