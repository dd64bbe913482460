"""Where the user is, for the search providers that can localise results.

A request's ``web_search_options.user_location`` (OpenAI's shape) sets :data:`current_location`
for the request's runs; a provider that can use it says so (``takes_location = True``) and reads
it when it builds its call: SerpAPI Google as ``gl`` (the country), Brave as ``country``. The
others ignore it. The search cache keys a localised provider's results by the country as well,
so a French and an American user never share an answer to the same query.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator
from dataclasses import dataclass

__all__ = ["SearchLocation", "current_location", "location_of", "search_location"]


@dataclass(frozen=True)
class SearchLocation:
    country: str | None = None
    """ISO 3166-1 alpha-2 (``FR``), as OpenAI's ``user_location.approximate.country``."""
    region: str | None = None
    city: str | None = None
    timezone: str | None = None


current_location: contextvars.ContextVar[SearchLocation | None] = contextvars.ContextVar(
    "mmsr_search_location", default=None
)


@contextlib.contextmanager
def search_location(location: SearchLocation | None) -> Iterator[None]:
    """Searches started inside (and the tasks they create) see ``location`` (the SDK's way)."""
    token = current_location.set(location)
    try:
        yield
    finally:
        current_location.reset(token)


def location_of(provider: object) -> SearchLocation | None:
    """The current location if ``provider`` takes one, else None."""
    return current_location.get() if getattr(provider, "takes_location", False) else None
