"""The things a world is made of: kinds of entities, their attributes, and entities with facts.

Every kind has the same three attribute types, under its own field names: a year (four digits),
a person (a two-syllable name) and a place (a two-syllable name from the world's small pool of
places, so places repeat across entities as countries do). Every value is made of tokens the tiny
tokenizer has: digits and syllables.

Entity groups (what a model may learn of them; where their questions go):

- ``known``: facts learnt from training questions answered without search; train, test-known.
- ``unknown``: facts only in the corpus (search required); train.
- ``heldout``: facts only in the corpus, never trained on; test-unknown.
- ``fresh``: an entity of another seed's world, never trained on; test-fresh.
- ``stream``: facts only in the corpus, every value new; stream (never-repeating training data).
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from mmsr_bench.world.names import VALUE_SYLLABLES, NameGenerator, random_name

Group = Literal["known", "unknown", "heldout", "fresh", "stream"]
ValueType = Literal["year", "person", "place"]
YEARS = (1500, 2020)


@dataclass(frozen=True)
class Attribute:
    key: str
    """The field name in reference pages and in the text query (``Bamoti architect``)."""
    type: ValueType
    questions: tuple[str, ...]
    """Phrasings of the question, all asked about the pictured entity."""


@dataclass(frozen=True)
class Kind:
    name: str
    attributes: tuple[Attribute, ...]


KINDS: dict[str, Kind] = {
    kind.name: kind
    for kind in (
        Kind(
            "landmark",
            (
                Attribute("year", "year", ("When was this built?", "What year was this building finished?")),
                Attribute("architect", "person", ("Who designed this building?", "Who was its architect?")),
                Attribute("country", "place", ("Which country is this in?", "Where is this landmark?")),
            ),
        ),
        Kind(
            "species",
            (
                Attribute(
                    "year", "year", ("When was this species discovered?", "What year was this animal found?")
                ),
                Attribute(
                    "discoverer", "person", ("Who discovered this species?", "Who first described it?")
                ),
                Attribute("region", "place", ("Where does this animal live?", "Which region is it from?")),
            ),
        ),
        Kind(
            "vehicle",
            (
                Attribute(
                    "year", "year", ("When was this vehicle first built?", "What year is this model from?")
                ),
                Attribute("maker", "person", ("Who made this vehicle?", "Who built this machine?")),
                Attribute("country", "place", ("Which country is this vehicle from?", "Where was it made?")),
            ),
        ),
        Kind(
            "artwork",
            (
                Attribute("year", "year", ("When was this artwork made?", "What year was this painted?")),
                Attribute("artist", "person", ("Who made this artwork?", "Who is the artist?")),
                Attribute("city", "place", ("Which city keeps this artwork?", "Where is this shown?")),
            ),
        ),
    )
}


@dataclass(frozen=True)
class Entity:
    name: str
    kind: str
    group: Group
    facts: Mapping[str, str]
    """Attribute key -> value, in the kind's attribute order."""
    look: str
    """Seed of its picture (see :func:`mmsr_bench.world.images.draw_master`)."""

    @property
    def id(self) -> str:
        return self.name.lower()

    @property
    def known(self) -> bool:
        return self.group == "known"

    @property
    def attributes(self) -> tuple[Attribute, ...]:
        return KINDS[self.kind].attributes

    def query(self, attribute: Attribute) -> str:
        """The text search that finds this fact: the name and the field."""
        return f"{self.name} {attribute.key}"


def make_entity(name: str, kind: str, group: Group, rng: random.Random, places: list[str]) -> Entity:
    """An entity with facts drawn from ``rng``; places from ``places``, or new ones if it is empty."""
    facts: dict[str, str] = {}
    for attribute in KINDS[kind].attributes:
        if attribute.type == "year":
            facts[attribute.key] = str(rng.randint(*YEARS))
        elif attribute.type == "person" or not places:
            facts[attribute.key] = random_name(rng, VALUE_SYLLABLES)
        else:
            facts[attribute.key] = rng.choice(places)
    return Entity(name, kind, group, facts, look=f"{group}:{name}:{rng.getrandbits(32)}")


def place_pool(names: NameGenerator, size: int) -> list[str]:
    """``size`` distinct place names."""
    return [names.unique(VALUE_SYLLABLES) for _ in range(size)]
