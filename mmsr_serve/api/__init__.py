"""The OpenAI-compatible HTTP server: ``create_app(Settings(...))``, run by ``mmsr serve``.

Modules: ``schemas`` (the wire format), ``convert`` (request -> agent inputs), ``render`` (results ->
response pieces), ``streaming`` (events -> SSE chunks), ``runs`` (n runs, deadline, cancellation),
``pipeline`` (one request's run, for both APIs), ``responses_request`` / ``responses_render`` (the
Responses API), ``routes`` (endpoints), ``errors`` (the envelope and status mapping), ``auth``,
``body``, ``metrics``, ``settings``, ``app`` (the factory) and ``cli`` (``mmsr serve`` and
``mmsr chat``).

``create_app`` and ``Settings`` are imported on first use: ``mmsr serve --help`` (which imports
this package for its ``cli`` module) must not load FastAPI.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mmsr_serve.api.app import create_app
    from mmsr_serve.api.settings import Settings

__all__ = ["Settings", "create_app"]


def __getattr__(name: str) -> Any:
    if name == "create_app":
        from mmsr_serve.api.app import create_app

        return create_app
    if name == "Settings":
        from mmsr_serve.api.settings import Settings

        return Settings
    raise AttributeError(f"module 'mmsr_serve.api' has no attribute {name!r}")
