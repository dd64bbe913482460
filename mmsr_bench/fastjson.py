"""JSON on the bench's hot paths (the load generator, the stand-ins): orjson where it is
installed (an optional speed-up, not a dependency), the standard library otherwise."""

from __future__ import annotations

import json
from typing import Any

try:
    import orjson
except ImportError:  # pragma: no cover - depends on the environment
    orjson = None  # type: ignore[assignment]

__all__ = ["dumps", "loads"]


def dumps(value: Any) -> bytes:
    """``value`` as compact UTF-8 JSON."""
    if orjson is not None:
        return orjson.dumps(value)
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()


def loads(data: bytes | str) -> Any:
    """Parsed JSON; ValueError when ``data`` is not JSON (orjson's error is one)."""
    if orjson is not None:
        return orjson.loads(data)
    return json.loads(data)
