"""JSON on the hot paths (the model backend's requests and streamed chunks, the bench's load
generator and stand-ins): orjson, several times faster than the standard library both ways."""

from __future__ import annotations

from typing import Any

import orjson

__all__ = ["dumps", "loads"]


def dumps(value: Any) -> bytes:
    """``value`` as compact UTF-8 JSON; TypeError for what JSON cannot hold (lone surrogates too)."""
    return orjson.dumps(value)


def loads(data: bytes | str) -> Any:
    """Parsed JSON; ValueError when ``data`` is not JSON or not UTF-8 (orjson's error is one)."""
    return orjson.loads(data)
