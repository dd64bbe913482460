"""The start-up banner of ``mmsr serve``: what is served where, and one command that works.

Printed once the server is ready (after the index and the search tools are warm), by the one
process, or by the supervisor before it starts ``--workers``. It names no secret: API keys show
as on/off, model server URLs without their credentials.
"""

from __future__ import annotations

import shlex

from mmsr_serve import __version__
from mmsr_serve._secret import without_credentials
from mmsr_serve.api.settings import Settings

__all__ = ["banner"]


def _client_host(host: str) -> str:
    """Where a client on this machine reaches the server (a wildcard bind is not an address)."""
    if host in ("0.0.0.0", ""):
        return "127.0.0.1"
    if host == "::":
        return "[::1]"
    return f"[{host}]" if ":" in host else host


def banner(settings: Settings) -> str:
    """The lines of the banner (no trailing newline)."""
    base = f"http://{_client_host(settings.host)}:{settings.port}/v1"
    if settings.backend == "hf":
        backend = f"in-process transformers ({settings.model}, {settings.device})"
    else:
        urls = ", ".join(without_credentials(u) for u in settings.backend_urls)
        backend = f"OpenAI-compatible server at {urls} (model {settings.model!r})"
    search = settings.search_config()
    tools = f"image: {', '.join(search.image) or 'none'}; text: {', '.join(search.text) or 'none'}"
    keys = "off (open to anyone who can connect)"
    if settings.api_keys:
        keys = f"on ({len(settings.api_keys)} accepted)"
    chat = ["mmsr", "chat", "What can you search for?", "--url", base]
    if settings.api_keys:
        chat += ["--api-key", "$MMSR_API_KEY"]
    command = " ".join(shlex.quote(part) if not part.startswith("$") else part for part in chat)
    workers = f" ({settings.workers} workers)" if settings.workers > 1 else ""
    lines = [
        f"mmsr {__version__} serving {settings.model_id!r} at {base}{workers}",
        f"  backend   {backend}",
        f"  search    {tools}",
        f"  index     {search.index or 'none'}",
        f"  API keys  {keys}",
        f"  try       {command}",
    ]
    return "\n".join(lines)
