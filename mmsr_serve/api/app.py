"""The app factory: settings (plus an optional backend and search tools) in, a FastAPI app out.

    app = create_app(Settings(model="mmsr-7b", index=Path("corpus/")))
    app = create_app(settings, backend=ScriptedBackend([...]), search=LocalIndex(corpus))  # tests

Without ``backend`` one is built from the settings: ``openai`` (any OpenAI-compatible server, one
or several replicas) or ``hf`` (the checkpoint folder ``model``, loaded in-process; torch is
imported only then). Without ``search`` the search tools are built from the settings
(:func:`~mmsr_serve.search.factory.build_search`: ``image_search`` / ``text_search`` provider
chains, the local index of ``settings.index`` by default), their calls counted in the metrics,
and what looks misconfigured is logged as a warning at start-up.
The prompt pack is ``settings.prompt_pack``, else the pack saved next to an ``hf`` checkpoint
(:data:`~mmsr_serve.agent.prompts.CHECKPOINT_PACK_FILES`), else the default pack.

Middleware, outermost first: metrics (every response counted), auth, body limit, then the fast
path of ``POST /v1/chat/completions`` (:mod:`mmsr_serve.api.fast_chat`).
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI

from mmsr_serve import __version__
from mmsr_serve.agent.agent import SearchAgent
from mmsr_serve.agent.prompts import load_pack
from mmsr_serve.api.auth import AuthMiddleware
from mmsr_serve.api.banner import banner
from mmsr_serve.api.body import BodyLimitMiddleware
from mmsr_serve.api.errors import install_error_handlers
from mmsr_serve.api.fast_chat import FastChatRoute
from mmsr_serve.api.metrics import Metrics, MetricsMiddleware, worker_exited
from mmsr_serve.api.public import router as public_router
from mmsr_serve.api.routes import READY_TIMEOUT_S, Runtime, router
from mmsr_serve.api.runs import Slots
from mmsr_serve.api.schemas import ErrorResponse
from mmsr_serve.api.settings import Settings
from mmsr_serve.api.workers import WORKER_ENV
from mmsr_serve.backends.base import ModelBackend
from mmsr_serve.errors import ConfigError
from mmsr_serve.images import Fetch
from mmsr_serve.search.base import ImageSearchTool, TextSearchTool
from mmsr_serve.search.factory import SearchTools

log = logging.getLogger("mmsr.search")


def create_app(
    settings: Settings,
    *,
    backend: ModelBackend | None = None,
    search: ImageSearchTool | TextSearchTool | None = None,
    fetch: Fetch | None = None,
) -> FastAPI:
    if settings.index is not None and search is None:
        _check_corpus(settings.index)
    backend = backend or settings.build_backend()
    metrics = Metrics()
    built: SearchTools | None = None
    tools: Any = search
    if search is None:
        built = settings.build_search()
        built.meter.subscribe(metrics.observe_provider_call)
        for warning in built.warnings:
            log.warning("%s", warning)
    elif isinstance(settings.search_cache, Path):
        from mmsr_serve.search.cache import cached

        tools = cached(search, settings.search_cache, mode=settings.search_cache_mode)
    fetch = fetch or _build_fetch(settings)
    pack_file = settings.prompt_pack_file()
    pack = load_pack(pack_file) if pack_file else None
    common: dict[str, Any] = {"limits": settings.limits(), "pack": pack, "fetch": fetch}
    if built is not None:
        agent = SearchAgent(backend, image_search=built.image, text_search=built.text, **common)
    else:
        agent = SearchAgent(backend, tools, **common)
    index = built.local if built is not None else search
    runtime = Runtime(
        settings, agent, metrics, Slots(settings.max_concurrent_requests), fetch, int(time.time()), index
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        ensure = getattr(index, "ensure_index", None)
        if built is not None:
            await asyncio.to_thread(built.warm)  # the index, and what first searches would load
        elif ensure is not None:
            await asyncio.to_thread(ensure)
        if WORKER_ENV not in os.environ:  # the supervisor of --workers prints it once
            logging.getLogger("uvicorn.error").info("%s", banner(settings))
        # Say now, not at the first request, when the model server cannot be reached.
        probe = asyncio.create_task(_probe_backend(backend))
        try:
            yield
        finally:
            probe.cancel()
            worker_exited()
            await backend.aclose()
            if built is not None:
                await built.aclose()
            for closing in {id(t): t for t in (tools, search) if t is not None}.values():
                close = getattr(closing, "close", None)
                if close is not None:
                    close()

    # No trailing-slash redirects: Starlette builds them from the Host header, which a client
    # chooses (GET /health/ with Host: evil.example was a 307 to http://evil.example/health).
    app = FastAPI(title="mmsr", version=__version__, lifespan=lifespan, redirect_slashes=False)
    app.state.runtime = runtime
    app.state.metrics = metrics
    app.state.publisher = built.publisher if built is not None else None
    app.include_router(router)
    app.include_router(public_router)
    install_error_handlers(app)
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    app.add_middleware(FastChatRoute)  # innermost: the hot route past FastAPI's routing
    app.add_middleware(
        BodyLimitMiddleware, max_bytes=settings.max_body_bytes, read_timeout_s=settings.client_timeout_s
    )
    app.add_middleware(AuthMiddleware, keys=settings.api_keys)
    app.add_middleware(MetricsMiddleware, metrics=metrics, log_format=settings.log_format)
    return app


def _check_corpus(folder: Path) -> None:
    """A missing corpus is a sentence at start-up, not a traceback after the model loaded."""
    if not folder.is_dir():
        raise ConfigError(f"--index {folder}: no such folder")
    if not (folder / "docs.jsonl").is_file():
        raise ConfigError(
            f"--index {folder}: not a corpus folder (no docs.jsonl; a corpus holds docs.jsonl and its"
            " images, docs/search.md)"
        )


async def _probe_backend(backend: ModelBackend) -> None:
    """Warn at start-up when the model backend is not ready (the server starts anyway)."""
    try:
        await asyncio.wait_for(backend.check_ready(), READY_TIMEOUT_S)
    except asyncio.CancelledError:
        raise
    except Exception as exc:  # any failure is worth the warning; none stops the start
        log.warning(
            "the model server is not ready: %s. Requests fail (502) until it is; GET /ready says when.",
            exc or f"no answer within {READY_TIMEOUT_S:g} s",
        )


def _build_fetch(settings: Settings) -> Fetch | None:
    """The safe fetcher for http(s) image URLs (None when the server takes data URLs only)."""
    if not settings.allow_image_urls:
        return None
    from mmsr_serve.fetch import SafeFetcher

    return SafeFetcher(allow=settings.fetch_allow, max_bytes=settings.max_image_bytes).fetch_image


def _openapi(app: FastAPI) -> dict[str, Any]:
    """FastAPI's schema, with the errors this server really answers: a request that fails
    validation is a 400 in OpenAI's envelope (mmsr_serve/api/errors.py), never FastAPI's 422."""
    if app.openapi_schema is not None:
        return app.openapi_schema
    from fastapi.openapi.utils import get_openapi

    schema = get_openapi(title=app.title, version=app.version, routes=app.routes)
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    components["ErrorResponse"] = ErrorResponse.model_json_schema(ref_template="#/components/schemas/{model}")
    for name, definition in components["ErrorResponse"].pop("$defs", {}).items():
        components.setdefault(name, definition)
    error = {
        "description": "Invalid request, in OpenAI's error envelope",
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorResponse"}}},
    }
    for operations in schema.get("paths", {}).values():
        for operation in operations.values():
            responses = operation.get("responses", {})
            if responses.pop("422", None) is not None:
                responses["400"] = error
    for unused in ("HTTPValidationError", "ValidationError"):
        components.pop(unused, None)
    app.openapi_schema = schema
    return schema
