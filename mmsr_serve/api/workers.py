"""``mmsr serve --workers N``: N server processes on one port, so the gateway uses every core.

One process runs the whole gateway on one core (its event loop); the search loop's CPU then caps
throughput long before a GPU model server does. With ``--workers N`` uvicorn's supervisor binds the
port once and starts N worker processes that accept from it (the kernel spreads connections), each
building the app from the same settings: the parent passes its config file and command-line values
in ``MMSR_WORKER_ARGS``, and each worker loads them as ``mmsr serve`` would, with the same
environment. What is per worker and what is shared, by design:

- the concurrency limit is per worker: each admits ``--max-concurrent-requests`` (the server up to
  N times that), so a worker never refuses while another has room it cannot see;
- the search cache is one SQLite file shared by all (it is built for several gateways);
- published images (reverse image search of uploads) go to one directory shared by the workers,
  so whichever worker the search provider reaches serves the image;
- Prometheus metrics: each worker writes to a shared directory (prometheus_client's multiprocess
  mode) and ``/metrics`` sums every worker's values, whichever worker answers;
- the local index is built (when missing or stale) once by the parent, before the workers start.

The in-process transformers backend cannot be shared: each worker would load its own copy of the
model, so ``--workers`` above 1 needs an OpenAI-compatible model server (``--backend openai``).
uvloop and httptools are used when installed (uvicorn's defaults).
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

from fastapi import FastAPI

from mmsr_serve.api.metrics import MULTIPROC_ENV
from mmsr_serve.api.protocol import guarded_protocol
from mmsr_serve.api.settings import Settings
from mmsr_serve.errors import ConfigError

__all__ = ["WORKER_ENV", "serve_workers", "worker_app"]

WORKER_ENV = "MMSR_WORKER_ARGS"


def serve_workers(settings: Settings, config: Path | None, overrides: dict[str, Any]) -> None:
    """Run ``settings.workers`` worker processes until interrupted (validated settings only)."""
    import uvicorn

    if settings.backend == "hf":
        raise ConfigError(
            "--workers above 1 needs an OpenAI-compatible model server (--backend openai): each"
            " worker would load its own copy of an in-process model"
        )
    from mmsr_serve.api.app import create_app

    create_app(settings)  # every configuration error shows here, once, not in each worker
    _build_index(settings)
    with tempfile.TemporaryDirectory(prefix="mmsr-workers-") as shared:
        metrics_dir = Path(shared, "metrics")
        metrics_dir.mkdir()
        values = {key: value for key, value in overrides.items() if value is not None}
        if settings.public_base_url and settings.public_image_dir is None:
            values["public_image_dir"] = str(Path(shared, "public-images"))
        os.environ[MULTIPROC_ENV] = str(metrics_dir)
        os.environ[WORKER_ENV] = json.dumps(
            {"config": str(config) if config else None, "values": values}, default=str
        )
        from mmsr_serve.api.banner import banner
        from mmsr_serve.api.cli import uvicorn_options

        print(banner(settings), file=sys.stderr, flush=True)

        uvicorn.run(
            "mmsr_serve.api.workers:worker_app",
            factory=True,
            workers=settings.workers,
            **uvicorn_options(settings),
        )


def worker_app() -> FastAPI:
    """The app of one worker process (uvicorn's factory), from the parent's ``MMSR_WORKER_ARGS``."""
    from mmsr_serve.api.app import create_app

    args = json.loads(os.environ[WORKER_ENV])
    config = Path(args["config"]) if args["config"] else None
    settings = Settings.load(config, **args["values"]).with_default_model(build=False)
    guarded_protocol(settings.client_timeout_s)  # this process's header deadline
    return create_app(settings)


def _build_index(settings: Settings) -> None:
    """Build the local index now, once, rather than in every worker at once."""
    search = settings.search_config()
    if search.index is None:
        return
    from mmsr_serve.search.local import LocalIndex

    index = LocalIndex(search.index, index_path=search.index_path)
    try:
        index.ensure_index()
    finally:
        index.close()
