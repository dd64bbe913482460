"""Fixtures for the web provider tests: fast retries (the stand-in providers are in tests/conftest.py)."""

from __future__ import annotations

from mmsr_serve.search._http import RetryPolicy

FAST = RetryPolicy(attempts=3, backoff_s=0.001, max_backoff_s=0.01)
