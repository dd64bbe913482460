"""The OpenAI-compatible HTTP server: ``create_app(Settings(...))``, run by ``mmsr serve``.

Modules: ``schemas`` (the wire format), ``convert`` (request -> agent inputs), ``render`` (results ->
response pieces), ``streaming`` (events -> SSE chunks), ``runs`` (n runs, deadline, cancellation),
``routes`` (endpoints), ``errors`` (the envelope and status mapping), ``auth``, ``body``, ``metrics``,
``settings``, ``app`` (the factory) and ``cli`` (``mmsr serve`` and ``mmsr chat``).
"""

from mmsr_serve.api.app import create_app
from mmsr_serve.api.settings import Settings

__all__ = ["Settings", "create_app"]
