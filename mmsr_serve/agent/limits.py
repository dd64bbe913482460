"""Limits of one agent run. Defaults are the paper's training limits."""

from __future__ import annotations

from dataclasses import dataclass, replace

from mmsr_serve.errors import InvalidInputError


@dataclass(frozen=True)
class Limits:
    max_turns: int = 3
    """Model turns per run, corrective turns included."""
    max_image_searches: int = 1
    max_text_searches: int = 2
    top_k: int = 5
    """Results per search shown to the model."""
    max_new_tokens: int = 2048
    """Tokens per model turn."""
    max_total_tokens: int = 8192
    """Tokens of the conversation after the first prompt: model turns plus inserted results."""
    max_image_pixels: int = 672 * 672
    search_timeout_s: float = 60.0
    recover: bool = True
    """Serving (True): a malformed turn or a search over its limit gets one corrective user turn
    while turns remain. Training (False): either ends the trajectory, as in the paper."""

    def __post_init__(self) -> None:
        for name in ("max_turns", "top_k", "max_new_tokens", "max_total_tokens", "max_image_pixels"):
            if getattr(self, name) < 1:
                raise InvalidInputError(f"{name} must be at least 1", param=name)
        for name in ("max_image_searches", "max_text_searches"):
            if getattr(self, name) < 0:
                raise InvalidInputError(f"{name} must not be negative", param=name)
        if self.search_timeout_s <= 0:
            raise InvalidInputError("search_timeout_s must be positive", param="search_timeout_s")

    def with_overrides(self, **overrides: object) -> Limits:
        """These limits with the given fields replaced (themselves when none is given); ``None``
        values are ignored."""
        given = {k: v for k, v in overrides.items() if v is not None}
        return replace(self, **given) if given else self  # type: ignore[arg-type]
