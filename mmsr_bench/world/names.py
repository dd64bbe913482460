"""Invented names made of the tiny tokenizer's consonant-vowel syllables.

Every name is a capitalised syllable followed by lower-case ones (``Bamoti`` = ``Ba`` ``mo``
``ti``), so the tiny tokenizer of :mod:`mmsr_train.tiny_model` encodes it as exactly one token per
syllable: a model that has seen each syllable can copy a name it has never seen. Entity names have
three syllables and attribute values two, so an entity name never equals a value.
:meth:`NameGenerator.unique` never hands out the same name twice and can be told names to avoid
(those of another world); :func:`random_name` draws freely (values may repeat).
"""

from __future__ import annotations

import random
from collections.abc import Iterable

SYLLABLES: tuple[str, ...] = tuple(
    syllable
    for consonant in "bcdfghjklmnprstvwyz"
    for vowel in "aeiou"
    for syllable in (consonant + vowel, consonant.upper() + vowel)
)
"""Every consonant-vowel pair, capitalised and not: the tiny tokenizer's pieces."""
LOWER_SYLLABLES: tuple[str, ...] = tuple(s for s in SYLLABLES if s.islower())
ENTITY_SYLLABLES = 3
VALUE_SYLLABLES = 2


def syllables_of(name: str) -> list[str]:
    """Split a generated name into its syllables (two characters each)."""
    return [name[i : i + 2] for i in range(0, len(name), 2)]


def random_name(rng: random.Random, syllables: int) -> str:
    return "".join(rng.choice(LOWER_SYLLABLES) for _ in range(syllables)).capitalize()


class NameGenerator:
    """Draws unique syllable names from ``rng``; ``avoid`` names are never drawn."""

    def __init__(self, rng: random.Random, avoid: Iterable[str] = ()) -> None:
        self._rng = rng
        self.used: set[str] = {name.lower() for name in avoid}

    def unique(self, syllables: int) -> str:
        for _ in range(10_000):
            name = random_name(self._rng, syllables)
            if name.lower() not in self.used:
                self.used.add(name.lower())
                return name
        raise RuntimeError(f"no unused {syllables}-syllable name left")
