"""The TLS client context of mmsr's own HTTP clients: built once per process, then shared.

httpx builds a new :class:`ssl.SSLContext` for every client it creates, and building one parses
the whole CA bundle: about 30 ms of CPU, spent on the event loop. The search providers' httpx
clients and :class:`~mmsr_serve.fetch.SafeFetcher`'s aiohttp sessions (one per fetch without
keepalive) take this one instead. :func:`client_ssl_context` is the context httpx would build by
default (``httpx.create_ssl_context``: certificates verified against certifi's bundle, or against
``SSL_CERT_FILE`` / ``SSL_CERT_DIR`` when the client trusts the environment), built on first use.
Sharing it is what an ``SSLContext`` is for: host names are checked per connection, and client
TLS sessions are never resumed across connections unless asked for.
"""

from __future__ import annotations

import functools
import ssl

import httpx

__all__ = ["client_ssl_context"]


@functools.cache
def client_ssl_context(*, trust_env: bool = True) -> ssl.SSLContext:
    """httpx's default client context (``verify=True``) for a client with this ``trust_env``."""
    return httpx.create_ssl_context(trust_env=trust_env)
