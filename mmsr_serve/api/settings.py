"""Server settings: the agent configuration plus the HTTP server's own fields, every flag of
``mmsr serve``.

The agent's fields (backend, search, limits, pack), how values are merged from the config file,
the environment and the flags, and the builders all live in :mod:`mmsr_serve.config`; this model
adds request limits, the listening address, API keys and logging.

The search limits (``max_turns`` ...) are both the defaults of a request and the ceiling a request's
extras may ask for: a client can lower them, never raise them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from pydantic import Field, field_validator

from mmsr_serve.api.schemas import MAX_MESSAGES, MAX_PARTS
from mmsr_serve.config import AgentConfig, ProviderSettings, read_config_file
from mmsr_serve.errors import ConfigError

__all__ = ["ProviderSettings", "Settings", "read_config_file"]


class Settings(AgentConfig):
    # request limits
    max_images: int = Field(4, ge=0)
    max_messages: int = Field(2048, ge=1, le=MAX_MESSAGES)
    """Messages per request (OpenAI's own limit is 2048); beyond it, 400."""
    max_content_parts: int = Field(4096, ge=1, le=MAX_PARTS)
    """Content parts (text and image parts) over all messages of a request; beyond it, 400."""
    max_image_bytes: int = Field(20 * 1024 * 1024, ge=1)
    allow_image_urls: bool = True
    """Accept http(s) image URLs (fetched through the safe fetcher) besides data URLs."""
    max_body_bytes: int = Field(32 * 1024 * 1024, ge=1024)
    max_n: int = Field(4, ge=1)
    max_concurrent_requests: int = Field(64, ge=1)
    request_timeout_s: float = Field(600.0, gt=0)
    shutdown_timeout_s: float = Field(30.0, ge=0)
    """On SIGTERM: new connections are refused and requests in flight get this long to finish;
    streams still running then end with an error event and ``[DONE]``, and the process exits."""
    stream_send_timeout_s: float = Field(30.0, gt=0)
    """A streaming client that reads nothing for this long is dropped (its slot freed)."""
    client_timeout_s: float = Field(30.0, gt=0)
    """A request's headers must arrive within this long, and each piece of its body within this
    long of the last (slowloris, short bodies): the connection is closed, or 408."""
    max_connections: int = Field(1024, ge=1)
    """Open connections (and tasks) a worker keeps; beyond it new requests get 503 at once."""
    # http
    workers: int = Field(1, ge=1)
    """Server processes on the port (mmsr_serve/api/workers.py); limits are per worker."""
    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535)
    api_keys: list[str] = Field(default_factory=list)
    log_level: Literal["critical", "error", "warning", "info", "debug"] = "info"
    log_format: Literal["text", "json"] = "text"  # the access lines (mmsr_serve/api/access.py)

    @field_validator("api_keys", mode="before")
    @classmethod
    def _split_keys(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [item.strip() for item in value.split(",") if item.strip()]
        return value

    @field_validator("api_keys", mode="before")
    @classmethod
    def _no_empty_keys(cls, value: Any) -> Any:
        # An unset shell variable (MMSR_API_KEY=$KEY) must not turn authentication off silently.
        items = value.split(",") if isinstance(value, str) else value
        if isinstance(items, list) and any(not str(k).strip() for k in items):
            raise ValueError(
                "an API key is empty: set real keys, or leave MMSR_API_KEY unset for an open server"
            )
        return value

    @property
    def wants_default_model(self) -> bool:
        """No model configured anywhere and no model server named: serve the embedded default."""
        named = self.model_fields_set
        server_settings = {"backend_urls", "backend_api_key", "backend_timeout_s"}
        return (
            not self.model
            and not (named & server_settings)
            and not ("backend" in named and self.backend == "openai")
        )

    def with_default_model(self, env: Mapping[str, str] | None = None, *, build: bool = True) -> Settings:
        """The embedded default filled in where nothing was configured (``mmsr serve`` alone).

        With no model: the packaged checkpoint (:mod:`mmsr_serve.default_model`) on the ``hf``
        backend; with no index and no search provider either: the demo world's corpus, generated on
        first use when ``build``. Anything configured is kept.
        """
        if not self.wants_default_model:
            return self
        from mmsr_serve import default_model

        if not default_model.is_available():
            raise ConfigError(
                "no model: pass --model (the served model name, or the checkpoint for --backend hf); "
                f"the embedded default model is not installed ({default_model.CHECKPOINT})"
            )
        update: dict[str, Any] = {"backend": "hf", "model": str(default_model.CHECKPOINT)}
        if not self.served_model_name:
            update["served_model_name"] = default_model.SERVED_NAME
        if self.index is None and self.index_path is None and not self.image_search and not self.text_search:
            update["index"] = default_model.demo_world(env, build=build) / "corpus"
        return self.model_copy(update=update)
