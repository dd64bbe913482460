"""Switchable faults of the stand-in servers: what a real model server or search provider does
on a bad day, drawn at random per request (``--faults 5xx=0.02,malformed=0.01,...``).

A spec is ``kind=probability`` pairs, comma-separated; the probabilities add up to 1 at most and
the rest of the requests are answered normally. The draw uses the stand-in's own seeded random
source, so a run is repeatable. Kinds:

- ``5xx``: HTTP 503 in the OpenAI error envelope (a server restarting, a replica out of memory).
- ``429``: HTTP 429 with ``Retry-After: 1`` (rate limited).
- ``echo``: HTTP 500 whose message echoes the request's ``Authorization`` header, as a careless
  proxy does (the gateway must never pass the key on).
- ``malformed``: a 200 whose body is not what the client expects (a stream event / a JSON body
  that does not parse).
- ``cut``: a 200 stream that stops after its first event, without a finish or ``[DONE]`` (model
  stand-in only).
- ``reset``: the connection is dropped after the first event (model) or before any byte (web).
- ``drip``: the answer is sent one event per ``drip_s`` (model) or after ``drip_s`` (web).
- ``hang``: nothing is sent for ``hang_s`` seconds, then the normal answer (the client's
  timeouts and the request deadline must end it first).
"""

from __future__ import annotations

import random
from dataclasses import dataclass

__all__ = ["MODEL_FAULTS", "WEB_FAULTS", "Faults", "parse_faults"]

MODEL_FAULTS = ("5xx", "429", "echo", "malformed", "cut", "reset", "drip", "hang")
WEB_FAULTS = ("5xx", "429", "malformed", "reset", "drip", "hang")


@dataclass(frozen=True)
class Faults:
    """Fault kinds with their probabilities, and the timings of ``drip`` and ``hang``."""

    weights: tuple[tuple[str, float], ...] = ()
    hang_s: float = 30.0
    drip_s: float = 0.5

    def draw(self, rng: random.Random) -> str | None:
        """The fault this request gets, or None (a normal answer)."""
        if not self.weights:
            return None
        roll = rng.random()
        for kind, probability in self.weights:
            if roll < probability:
                return kind
            roll -= probability
        return None


def parse_faults(spec: str, kinds: tuple[str, ...], *, hang_s: float = 30.0, drip_s: float = 0.5) -> Faults:
    """``"5xx=0.02,hang=0.001"`` as :class:`Faults`; ValueError naming what is wrong."""
    weights: list[tuple[str, float]] = []
    for item in filter(None, (part.strip() for part in spec.split(","))):
        kind, sep, value = item.partition("=")
        kind = kind.strip()
        if not sep or kind not in kinds:
            raise ValueError(f"fault {item!r}: expected kind=probability, kind one of {', '.join(kinds)}")
        try:
            probability = float(value)
        except ValueError:
            raise ValueError(f"fault {item!r}: the probability is not a number") from None
        if not 0 <= probability <= 1:
            raise ValueError(f"fault {item!r}: the probability must be between 0 and 1")
        weights.append((kind, probability))
    if sum(p for _, p in weights) > 1 + 1e-9:
        raise ValueError(f"faults {spec!r}: the probabilities add up to more than 1")
    if hang_s < 0 or drip_s < 0:
        raise ValueError("hang and drip times must be 0 or more")
    return Faults(tuple(weights), hang_s=hang_s, drip_s=drip_s)
