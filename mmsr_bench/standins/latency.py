"""Latency distributions written as short strings, shared by the model and web stand-ins.

A duration is a number of seconds (``0.05``) or carries a unit (``50ms``, ``0.05s``, ``800us``).
A distribution is one of::

    0, 50ms, 0.05            fixed
    exp:50ms                 exponential with that mean
    lognormal:50ms:0.5       log-normal with that median and sigma (of the log)
    uniform:20ms:80ms        uniform between the two
    normal:50ms:10ms         normal with that mean and standard deviation, clamped at 0

:func:`parse_latency` reads one into a :class:`Latency`, whose :meth:`~Latency.sample` draws from
the ``random.Random`` it is given (each stand-in owns one, seeded, so a run can be repeated).
"""

from __future__ import annotations

import math
import random
import re
from dataclasses import dataclass
from typing import Literal

__all__ = ["FORMS", "Latency", "parse_duration", "parse_latency"]

Kind = Literal["fixed", "exp", "lognormal", "uniform", "normal"]
FORMS = "0, 50ms, 0.05 (seconds), exp:50ms, lognormal:50ms:0.5, uniform:20ms:80ms, normal:50ms:10ms"
"""The accepted forms, as error messages name them."""

_PER_SECOND = {"": 1.0, "s": 1.0, "ms": 1e3, "us": 1e6}
_DURATION = re.compile(r"([0-9]*\.?[0-9]+(?:e[-+]?[0-9]+)?)\s*(s|ms|us)?", re.IGNORECASE)
_ARITY: dict[str, int] = {"exp": 1, "lognormal": 2, "uniform": 2, "normal": 2}


@dataclass(frozen=True)
class Latency:
    """A latency distribution; ``a`` and ``b`` are its parameters in seconds (``lognormal``'s ``b``
    is sigma, unitless). ``str()`` gives back a string :func:`parse_latency` reads."""

    kind: Kind = "fixed"
    a: float = 0.0
    b: float = 0.0

    def sample(self, rng: random.Random) -> float:
        """One latency in seconds (never negative)."""
        if self.kind == "fixed":
            return self.a
        if self.kind == "exp":
            return rng.expovariate(1.0 / self.a) if self.a > 0 else 0.0
        if self.kind == "lognormal":
            return rng.lognormvariate(math.log(self.a), self.b) if self.a > 0 else 0.0
        if self.kind == "uniform":
            return rng.uniform(self.a, self.b)
        return max(0.0, rng.gauss(self.a, self.b))

    @property
    def mean_s(self) -> float:
        """The distribution's mean in seconds (the clamped normal's is approximated by its mean)."""
        if self.kind == "lognormal":
            return self.a * math.exp(self.b**2 / 2)
        if self.kind == "uniform":
            return (self.a + self.b) / 2
        return self.a

    def __str__(self) -> str:
        if self.kind == "fixed":
            return _ms(self.a)
        if self.kind == "exp":
            return f"exp:{_ms(self.a)}"
        if self.kind == "lognormal":
            return f"lognormal:{_ms(self.a)}:{self.b:g}"
        return f"{self.kind}:{_ms(self.a)}:{_ms(self.b)}"


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:g}ms"


def parse_duration(text: str) -> float:
    """Seconds in ``text`` (``0.05``, ``50ms``, ``0.05s``, ``800us``); ValueError otherwise."""
    match = _DURATION.fullmatch(text.strip())
    if match is None:
        raise ValueError(f"not a duration: {text!r} (write seconds, or a number with s, ms or us)")
    return float(match.group(1)) / _PER_SECOND[(match.group(2) or "").lower()]


def parse_latency(spec: str) -> Latency:
    """The distribution ``spec`` describes (see the module docstring); a ValueError naming the
    accepted forms when it describes none."""
    head, _, rest = spec.strip().partition(":")
    kind = head.lower()
    try:
        if not rest and kind not in _ARITY:
            return Latency("fixed", parse_duration(head))
        args = rest.split(":") if rest else []
        if kind not in _ARITY or len(args) != _ARITY[kind]:
            raise ValueError("unknown form")
        if kind == "exp":
            return Latency("exp", parse_duration(args[0]))
        if kind == "lognormal":
            sigma = float(args[1])
            if not sigma >= 0:
                raise ValueError("sigma must be a number of 0 or more")
            return Latency("lognormal", parse_duration(args[0]), sigma)
        low, high = parse_duration(args[0]), parse_duration(args[1])
        if kind == "uniform" and high < low:
            raise ValueError("the upper bound is below the lower one")
        return Latency("uniform" if kind == "uniform" else "normal", low, high)
    except ValueError as exc:
        raise ValueError(f"bad latency {spec!r} ({exc}): use one of {FORMS}") from None
