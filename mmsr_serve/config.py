"""The agent configuration: backend, search tools and providers, limits, prompt pack, image sizes.

One pydantic model, :class:`AgentConfig`, with one loader (:meth:`AgentConfig.load`) and one set of
builders (:meth:`~AgentConfig.build_backend`, :meth:`~AgentConfig.build_search`,
:meth:`~AgentConfig.limits`, :meth:`~AgentConfig.prompt_pack_file`). ``mmsr serve`` (its
:class:`~mmsr_serve.api.settings.Settings` add the HTTP server's own fields), the SDK, GRPO, SFT,
curation and evaluation all build their agent from it, so an option given once reaches serving and
training rollouts alike.

Values come from, lowest precedence first: the defaults below, a checkpoint's record of the
configuration it was trained with (:data:`RECORD_FILE`; its limits and image sizes, for an ``hf``
checkpoint folder), a config file (YAML or JSON, keys are the field names, ``-`` or ``_``),
``MMSR_*`` environment variables, then explicit values (command-line flags). The environment
variable of a field is ``MMSR_`` + its name in upper case, except ``backend_urls``
(``MMSR_BACKEND_URL``) and ``api_keys`` (``MMSR_API_KEY``); list values in the environment are
comma-separated. ``MMSR_CONFIG`` names the config file when no flag does.

Older spellings are accepted with a warning: ``corpus`` (now ``index``), ``reader``
(``page_reader``), ``max_new_tokens`` (``max_tokens``).

Web search providers take their keys and base URLs from the ``providers:`` mapping and from
environment variables named after them (``SERPAPI_API_KEY``, ``BRAVE_BASE_URL`` ...; see
:mod:`mmsr_serve.search.config`), which win. Keys are never accepted as flags (a command line is
visible to every user of the machine) and never printed (``SecretStr``).
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from typing_extensions import Self

from mmsr_serve.agent.limits import Limits
from mmsr_serve.agent.prompts import checkpoint_pack
from mmsr_serve.errors import ConfigError
from mmsr_serve.search.config import (
    DEFAULT_MIN_RELATIVE_SCORE,
    ProviderConfig,
    SearchConfig,
    choices,
    default_cache_path,
    is_web,
    provider_env,
    sections,
)
from mmsr_serve.search.costs import Meter, Price

if TYPE_CHECKING:
    from mmsr_serve.backends.base import ModelBackend
    from mmsr_serve.search.factory import SearchTools

__all__ = [
    "OLD_NAMES",
    "PROTOCOL_FIELDS",
    "RECORD_FILE",
    "AgentConfig",
    "ProviderSettings",
    "read_config_file",
]

ENV_PREFIX = "MMSR_"
_ENV_NAMES = {"backend_urls": "MMSR_BACKEND_URL", "api_keys": "MMSR_API_KEY"}
_CACHE_OFF = ("off", "none")
OLD_NAMES = {"corpus": "index", "reader": "page_reader", "max_new_tokens": "max_tokens"}
"""Spellings of earlier releases (the training commands') and the field each one now names."""
RECORD_FILE = "mmsr_agent.json"
"""The agent configuration a checkpoint was trained with, written next to its weights."""
PROTOCOL_FIELDS = (
    "max_turns",
    "max_image_searches",
    "max_text_searches",
    "top_k",
    "max_tokens",
    "max_total_tokens",
    "max_image_pixels",
)
"""What serving takes over from a checkpoint's record: the limits and image sizes it learned with."""

_LIMITS = Limits()  # the protocol's limits, the one place they are written


class ProviderSettings(BaseModel):
    """One web provider's section of the config file (``providers: {serpapi: {...}}``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    api_key: SecretStr | None = None
    base_url: str | None = None
    options: dict[str, Any] = Field(default_factory=dict)
    """Fixed request parameters (``hl``, ``gl``, ``country``, ``search_depth``, ``backend`` ...)."""


class AgentConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    # model backend
    backend: Literal["openai", "hf"] = "openai"
    backend_urls: list[str] = Field(default_factory=lambda: ["http://127.0.0.1:8000/v1"])
    """Base URLs of OpenAI-compatible model servers (several vLLM replicas are balanced)."""
    backend_api_key: str | None = None
    backend_timeout_s: float = Field(600.0, gt=0)
    model: str | None = None
    """The model the backend serves (``openai``) or the checkpoint folder to load (``hf``)."""
    served_model_name: str | None = None
    """The id clients send as ``model`` and ``/v1/models`` lists; defaults to ``model``."""
    device: str = "auto"
    """``hf`` only: cpu, cuda, cuda:N or auto."""
    # search and protocol
    index: Path | None = None
    """Local search corpus folder (``docs.jsonl`` + images): the search tools when no provider is named."""
    index_path: Path | None = None
    """The local index file; default ``<index>/.mmsr-index.sqlite`` (set it for a read-only corpus)."""
    index_min_score: float = Field(DEFAULT_MIN_RELATIVE_SCORE, ge=0.0, le=1.0)
    """Local text search: hits scoring under this share of the best hit's BM25 score are dropped."""
    search_cache: Path | Literal["off"] | None = None
    """SQLite file caching every search (may sit on storage shared by several gateways). Unset: the
    web providers use ``~/.cache/mmsr/search-cache.sqlite``; ``off``: no cache at all."""
    search_cache_mode: Literal["readwrite", "replay", "refresh"] = "readwrite"
    prompt_pack: Path | None = None
    """The prompt pack file; default: the checkpoint's own (``hf``), else the project's."""
    max_turns: int = Field(_LIMITS.max_turns, ge=1)
    max_image_searches: int = Field(_LIMITS.max_image_searches, ge=0)
    max_text_searches: int = Field(_LIMITS.max_text_searches, ge=0)
    top_k: int = Field(_LIMITS.top_k, ge=1)
    max_tokens: int = Field(_LIMITS.max_new_tokens, ge=1)
    """Tokens per model turn (in serving, the ceiling of a request's ``max_tokens``)."""
    max_total_tokens: int = Field(_LIMITS.max_total_tokens, ge=1)
    max_image_pixels: int = Field(_LIMITS.max_image_pixels, ge=1)
    search_timeout_s: float = Field(_LIMITS.search_timeout_s, gt=0)
    # web search (docs/search.md)
    image_search: list[str] = Field(default_factory=list)
    """Image search providers in fallback order; default ``local`` when ``index`` is set."""
    text_search: list[str] = Field(default_factory=list)
    """Text search providers in fallback order; default ``local`` when ``index`` is set."""
    page_reader: str = "local"
    """How web pages are read: ``local``, a registered reader (``jina``), or ``none``."""
    summarizer_base_url: str | None = None
    summarizer_model: str | None = None
    summarizer_api_key: SecretStr | None = None
    public_base_url: str | None = None
    """Where the provider can fetch this server's ``/public/images/`` (reverse image search)."""
    public_image_ttl_s: float = Field(300.0, gt=0)
    public_image_dir: Path | None = None
    """Where published images are kept: a directory shared by every process serving
    ``public_base_url`` (``mmsr serve --workers N`` sets one up); unset: this process's memory."""
    providers: dict[str, ProviderSettings] = Field(default_factory=dict)
    search_prices: dict[str, float | dict[str, float]] = Field(default_factory=dict)
    """USD per successful call (a number), or ``{per_call, per_1k_tokens}``, by provider name."""
    read_timeout_s: float = Field(15.0, gt=0)
    summarize_timeout_s: float = Field(30.0, gt=0)
    search_concurrency: int = Field(5, ge=1)
    """Pages read and summarized at once by one text search."""
    fetch_allow: list[str] = Field(default_factory=list)
    """Hosts the fetchers may reach even on private or loopback addresses (development)."""

    @model_validator(mode="before")
    @classmethod
    def _old_names(cls, data: Any) -> Any:
        return _renamed(data) if isinstance(data, dict) else data

    @field_validator("backend_urls", "fetch_allow", "image_search", "text_search", mode="before")
    @classmethod
    def _split_commas(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [item.strip() for item in value.split(",") if item.strip()]
        return value

    @field_validator("image_search", "text_search")
    @classmethod
    def _known_providers(cls, value: list[str], info: Any) -> list[str]:
        known = choices("image" if info.field_name == "image_search" else "text")
        for name in value:
            if name not in known:
                raise ValueError(f"unknown provider {name!r}: choose from {', '.join(known)}")
        return value

    @field_validator("page_reader")
    @classmethod
    def _known_reader(cls, value: str) -> str:
        if value not in choices("reader"):
            raise ValueError(f"unknown page reader {value!r}: choose from {', '.join(choices('reader'))}")
        return value

    @field_validator("providers")
    @classmethod
    def _known_sections(cls, value: dict[str, ProviderSettings]) -> dict[str, ProviderSettings]:
        unknown = set(value) - set(sections())
        if unknown:
            raise ValueError(f"unknown provider sections {sorted(unknown)}: use {', '.join(sections())}")
        return value

    @field_validator("search_prices")
    @classmethod
    def _valid_prices(cls, value: dict[str, Any]) -> dict[str, Any]:
        for price in value.values():
            Price.parse(price)
        return value

    @field_validator("search_cache", mode="before")
    @classmethod
    def _cache_off(cls, value: Any) -> Any:
        return "off" if value is not None and str(value).strip().lower() in _CACHE_OFF else value

    # ------------------------------------------------------------------------------- derived

    @property
    def model_id(self) -> str:
        if self.served_model_name:
            return self.served_model_name
        if self.model:
            return Path(self.model).name if self.backend == "hf" else self.model
        return "mmsr"

    def limits(self, *, recover: bool = True) -> Limits:
        """The run limits (``recover=False``: training, a malformed turn ends the trajectory)."""
        return Limits(
            max_turns=self.max_turns,
            max_image_searches=self.max_image_searches,
            max_text_searches=self.max_text_searches,
            top_k=self.top_k,
            max_new_tokens=self.max_tokens,
            max_total_tokens=self.max_total_tokens,
            max_image_pixels=self.max_image_pixels,
            search_timeout_s=self.search_timeout_s,
            recover=recover,
        )

    def prompt_pack_file(self) -> Path | None:
        """The configured pack, else the one an ``hf`` checkpoint carries; ``None``: the default."""
        if self.prompt_pack is not None:
            return self.prompt_pack
        if self.backend == "hf" and self.model:
            return checkpoint_pack(self.model)
        return None

    def search_config(self) -> SearchConfig:
        """The search tools this configuration describes (built by :meth:`build_search`)."""
        image = tuple(self.image_search or (["local"] if self.index is not None else []))
        text = tuple(self.text_search or (["local"] if self.index is not None else []))
        cache: Path | None = None
        if isinstance(self.search_cache, Path):
            cache = self.search_cache
        elif self.search_cache is None and any(is_web(name) for name in (*image, *text)):
            cache = default_cache_path()
        providers = {
            name: ProviderConfig(
                p.api_key.get_secret_value() if p.api_key else None, p.base_url, dict(p.options)
            )
            for name, p in self.providers.items()
        }
        key = self.summarizer_api_key
        return SearchConfig(
            image=image,
            text=text,
            index=self.index,
            index_path=self.index_path,
            index_min_score=self.index_min_score,
            cache=cache,
            cache_mode=self.search_cache_mode,
            reader=self.page_reader,
            summarizer_base_url=self.summarizer_base_url,
            summarizer_model=self.summarizer_model,
            summarizer_api_key=key.get_secret_value() if key else None,
            public_base_url=self.public_base_url,
            public_image_ttl_s=self.public_image_ttl_s,
            public_image_dir=self.public_image_dir,
            providers=providers,
            prices=dict(self.search_prices),
            fetch_allow=tuple(self.fetch_allow),
            search_timeout_s=min(20.0, self.search_timeout_s * 0.4),
            read_timeout_s=self.read_timeout_s,
            summarize_timeout_s=self.summarize_timeout_s,
            deadline_s=self.search_timeout_s * 0.85,
            concurrency=self.search_concurrency,
        )

    # ------------------------------------------------------------------------------- builders

    def build_search(self, *, meter: Meter | None = None) -> SearchTools:
        """The search tools (close them with ``await tools.aclose()``)."""
        from mmsr_serve.search.factory import build_search

        return build_search(self.search_config(), meter=meter or Meter(self.search_prices))

    def build_backend(self) -> ModelBackend:
        """The model backend: an OpenAI-compatible server, or the ``hf`` checkpoint in-process."""
        if not self.model:
            raise ConfigError(
                "no model: pass --model (the served model name, or the checkpoint for --backend hf)"
            )
        if self.backend == "hf":
            from mmsr_serve.backends.hf import TransformersBackend

            local = Path(self.model).expanduser()
            if self.model.startswith((".", "/", "~")) or local.exists():
                if not local.is_dir():  # a path, not a hub id: say so before transformers does
                    raise ConfigError(f"--model {self.model}: no checkpoint folder there")
                if not (local / "config.json").is_file():
                    raise ConfigError(f"--model {self.model}: not a checkpoint folder (no config.json)")

            return TransformersBackend(self.model, device=self.device, model=self.model_id)
        from mmsr_serve.backends.openai_http import OpenAIBackend

        return OpenAIBackend(
            self.backend_urls, self.model, api_key=self.backend_api_key, timeout_s=self.backend_timeout_s
        )

    def record(self) -> dict[str, Any]:
        """What a checkpoint records of the configuration it was trained with: every agent field but
        the backend's and the secrets (provider keys stay out), in config-file form."""
        skip = {"backend", "backend_urls", "backend_api_key", "model", "served_model_name", "device"}
        data = self.model_dump(mode="json", include=set(AgentConfig.model_fields) - skip)
        data.pop("summarizer_api_key", None)
        for section in data.get("providers", {}).values():
            section.pop("api_key", None)
        return data

    def save_record(self, folder: str | os.PathLike[str]) -> Path:
        path = Path(folder) / RECORD_FILE
        path.write_text(json.dumps(self.record(), indent=2, sort_keys=True) + "\n", encoding="utf-8")
        return path

    # ------------------------------------------------------------------------------- loading

    @classmethod
    def load(
        cls,
        config_file: str | os.PathLike[str] | None = None,
        *,
        env: Mapping[str, str] | None = None,
        **overrides: Any,
    ) -> Self:
        """Merge a checkpoint's record, the config file, the environment and ``overrides`` (``None``
        values are skipped); see the module docstring for the order."""
        env = os.environ if env is None else env
        config_file = config_file or env.get(f"{ENV_PREFIX}CONFIG") or None
        return cls.from_sources(read_config_file(config_file) if config_file else {}, env=env, **overrides)

    @classmethod
    def from_sources(
        cls, file_values: Mapping[str, Any], *, env: Mapping[str, str], **overrides: Any
    ) -> Self:
        """:meth:`load` once the config file is read: ``file_values``, then ``env``, then ``overrides``."""
        values: dict[str, Any] = _renamed(dict(file_values))
        for name in cls.model_fields:
            key = _ENV_NAMES.get(name, ENV_PREFIX + name.upper())
            if key in env:
                values[name] = env[key]
        if isinstance(values.get("search_prices"), str):
            values["search_prices"] = _json_env("MMSR_SEARCH_PRICES", values["search_prices"])
        sections = dict(values.get("providers") or {})
        for section, found in provider_env(env).items():
            sections[section] = {**(sections.get(section) or {}), **found}
        if sections:
            values["providers"] = sections
        values.update(_renamed({k: v for k, v in overrides.items() if v is not None and v != []}))
        values = {**checkpoint_protocol(values), **values}
        try:
            return cls.model_validate(values)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            raise ConfigError(f"invalid setting {where}: {first['msg']}") from exc


def _renamed(values: dict[str, Any]) -> dict[str, Any]:
    """``values`` with the old spellings moved to their new names (a warning for each; the new
    name wins where both are given)."""
    out = dict(values)
    for old, new in OLD_NAMES.items():
        if old in out:
            value = out.pop(old)
            warnings.warn(f"{old!r} is now called {new!r}; please rename it", FutureWarning, stacklevel=4)
            out.setdefault(new, value)
    return out


def checkpoint_protocol(values: Mapping[str, Any]) -> dict[str, Any]:
    """The limits and image sizes recorded by the ``hf`` checkpoint ``values`` names, if any."""
    model = values.get("model")
    if values.get("backend") != "hf" or not model:
        return {}
    path = Path(str(model)) / RECORD_FILE
    if not path.is_file():
        return {}
    record = read_config_file(path)
    return {name: record[name] for name in PROTOCOL_FIELDS if name in record}


def _json_env(name: str, text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError as exc:
        raise ConfigError(f"{name} must be JSON: {exc}") from exc


def read_config_file(path: str | os.PathLike[str]) -> dict[str, Any]:
    """A config file as a mapping of field names (``-`` read as ``_``): JSON for ``.json``, else YAML."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (OSError, ValueError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot read config file {path}: {exc}") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping of setting names to values")
    return {str(k).replace("-", "_"): v for k, v in data.items()}
