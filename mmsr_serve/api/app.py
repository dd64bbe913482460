"""The app factory: settings (plus an optional backend and search tools) in, a FastAPI app out.

    app = create_app(Settings(model="mmsr-7b", index=Path("corpus/")))
    app = create_app(settings, backend=ScriptedBackend([...]), search=LocalIndex(corpus))  # tests

Without ``backend`` one is built from the settings: ``openai`` (any OpenAI-compatible server, one
or several replicas) or ``hf`` (the checkpoint folder ``model``, loaded in-process; torch is
imported only then). Without ``search`` the local index of ``settings.index`` is used, if any.
The prompt pack is ``settings.prompt_pack``, else the pack saved next to an ``hf`` checkpoint
(:data:`CHECKPOINT_PACK_FILES`), else the default pack.

Middleware, outermost first: metrics (every response counted), auth, body limit.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI

from mmsr_serve import __version__
from mmsr_serve.agent.agent import SearchAgent
from mmsr_serve.agent.prompts import PromptPack, load_pack
from mmsr_serve.api.auth import AuthMiddleware
from mmsr_serve.api.body import BodyLimitMiddleware
from mmsr_serve.api.errors import install_error_handlers
from mmsr_serve.api.metrics import Metrics, MetricsMiddleware
from mmsr_serve.api.routes import Runtime, router
from mmsr_serve.api.runs import Slots
from mmsr_serve.api.settings import Settings
from mmsr_serve.backends.base import ModelBackend
from mmsr_serve.errors import ConfigError
from mmsr_serve.images import Fetch
from mmsr_serve.search.base import ImageSearchTool, TextSearchTool

CHECKPOINT_PACK_FILES = ("prompt_pack.json", "prompt_pack.yaml")


def create_app(
    settings: Settings,
    *,
    backend: ModelBackend | None = None,
    search: ImageSearchTool | TextSearchTool | None = None,
    fetch: Fetch | None = None,
) -> FastAPI:
    backend = backend or build_backend(settings)
    if search is None and settings.index is not None:
        from mmsr_serve.search.local import LocalIndex

        search = LocalIndex(settings.index)
    tools: Any = search
    if search is not None and settings.search_cache is not None:
        from mmsr_serve.search.cache import cached

        tools = cached(search, settings.search_cache, mode=settings.search_cache_mode)
    fetch = fetch or _build_fetch(settings)
    agent = SearchAgent(backend, tools, limits=settings.limits(), pack=_pack(settings), fetch=fetch)
    metrics = Metrics()
    runtime = Runtime(
        settings, agent, metrics, Slots(settings.max_concurrent_requests), fetch, int(time.time())
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        ensure = getattr(search, "ensure_index", None)
        if ensure is not None:
            await asyncio.to_thread(ensure)
        try:
            yield
        finally:
            await backend.aclose()
            for closing in {id(t): t for t in (tools, search)}.values():
                close = getattr(closing, "close", None)
                if close is not None:
                    close()

    app = FastAPI(title="mmsr", version=__version__, lifespan=lifespan)
    app.state.runtime = runtime
    app.state.metrics = metrics
    app.include_router(router)
    install_error_handlers(app)
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    app.add_middleware(AuthMiddleware, keys=settings.api_keys)
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    return app


def build_backend(settings: Settings) -> ModelBackend:
    if not settings.model:
        raise ConfigError(
            "no model: pass --model (the served model name, or the checkpoint for --backend hf)"
        )
    if settings.backend == "hf":
        from mmsr_serve.backends.hf import TransformersBackend

        return TransformersBackend(settings.model, device=settings.device, model=settings.model_id)
    from mmsr_serve.backends.openai_http import OpenAIBackend

    return OpenAIBackend(
        settings.backend_urls,
        settings.model,
        api_key=settings.backend_api_key,
        timeout_s=settings.backend_timeout_s,
    )


def _pack(settings: Settings) -> PromptPack | None:
    if settings.prompt_pack is not None:
        return load_pack(settings.prompt_pack)
    if settings.backend == "hf" and settings.model:
        for name in CHECKPOINT_PACK_FILES:
            path = Path(settings.model) / name
            if path.is_file():
                return load_pack(path)
    return None


def _build_fetch(settings: Settings) -> Fetch | None:
    """The safe fetcher for http(s) image URLs (None when the server takes data URLs only)."""
    if not settings.allow_image_urls:
        return None
    from mmsr_serve.search.fetch import SafeFetcher

    return SafeFetcher(allow=settings.fetch_allow, max_bytes=settings.max_image_bytes).fetch_image
