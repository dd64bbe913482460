"""The base of every web provider that calls a JSON API over HTTP.

A provider module subclasses :class:`HttpProvider`, sets its ``name``, ``default_base_url`` and
``key_env``, and writes one method, ``search_text`` or ``search_image`` (or ``read``), that builds
the request from ``self.options`` and ``self.require_key()`` and reads the answer. What every such
provider shares lives here: the key (a :class:`~mmsr_serve._secret.Secret`, never printed),
the fixed request options, the :class:`~mmsr_serve.search._http.ApiClient` (timeout, retries,
metering, error translation), ``repr`` and ``aclose``. All of them take the same arguments, so the
factory builds any registered provider (:mod:`mmsr_serve.search.registry`) the same way.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from mmsr_serve._secret import Secret
from mmsr_serve.errors import SearchError
from mmsr_serve.search._http import ApiClient, RetryPolicy
from mmsr_serve.search.costs import Meter

__all__ = ["HttpProvider", "score_of"]


class HttpProvider:
    name: str
    """The provider's name: its registry entry, its meter label, the prefix of its errors."""
    default_base_url: ClassVar[str | None] = None
    """``None``: there is no public endpoint, the base URL must be configured (self-hosted)."""
    key_env: ClassVar[str | None] = None
    """The environment variable named when the key is missing."""
    default_options: ClassVar[Mapping[str, Any]] = {}
    default_timeout_s: ClassVar[float] = 15.0
    status_hints: ClassVar[Mapping[int, str]] = {}
    """Extra words for the error of an HTTP status (what to check on the provider's side)."""

    def __init__(
        self,
        api_key: str | Secret | None = None,
        *,
        base_url: str | None = None,
        options: Mapping[str, Any] | None = None,
        meter: Meter | None = None,
        timeout_s: float | None = None,
        retry: RetryPolicy | None = None,
    ) -> None:
        base_url = base_url or self.default_base_url
        if not base_url:
            raise ValueError(f"{self.name}: a base URL is required")
        self._key = api_key if isinstance(api_key, Secret) else Secret(api_key or "")
        self.options: dict[str, Any] = {**self.default_options, **(options or {})}
        """Fixed request parameters, sent with every call (``hl``, ``country``, ``search_depth`` ...)."""
        self._api = ApiClient(
            self.name,
            base_url,
            meter=meter,
            timeout_s=self.default_timeout_s if timeout_s is None else timeout_s,
            retry=retry,
            status_hints=self.status_hints,
        )

    def __repr__(self) -> str:
        return f"{type(self).__name__}(base_url={self._api.base_url!r})"

    @property
    def has_key(self) -> bool:
        return bool(self._key)

    def require_key(self) -> str:
        """The key, for the one place a request is built; a tool error when none is configured."""
        if not self._key:
            hint = f" (set {self.key_env})" if self.key_env else ""
            raise SearchError(f"{self.name}: no API key configured{hint}")
        return self._key.reveal()

    async def request(self, method: str, path: str, **kwargs: Any) -> Any:
        """The parsed JSON of a 2xx answer (see :meth:`ApiClient.request`)."""
        return await self._api.request(method, path, **kwargs)

    async def aclose(self) -> None:
        await self._api.aclose()


def score_of(result: Mapping[str, Any]) -> float | None:
    """A result's numeric ``score`` field, when the API gives one."""
    score = result.get("score")
    return float(score) if isinstance(score, (int, float)) else None
