"""What a world contains, decided from its seed before anything is drawn or written.

:func:`plan_world` is pure: the same :class:`WorldConfig` gives the same entities, names and facts.
Every entity draws its facts and its look from a random generator keyed by its own name, so
adding stream entities or fresh ones never changes the others. Names are unique across the main
world, the fresh world and the stream; the fresh world has its own pool of places.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from mmsr_bench.world.entities import KINDS, Entity, Group, make_entity, place_pool
from mmsr_bench.world.names import ENTITY_SYLLABLES, NameGenerator
from mmsr_bench.world.pages import MAX_WEB_PAGES


@dataclass(frozen=True)
class WorldConfig:
    seed: int = 0
    entities: int = 80
    """Entities of the main world: known, unknown (trained with search) and held-out."""
    known_fraction: float = 0.5
    heldout_fraction: float = 0.5
    """Share of the main world's unknown entities kept out of training (the test-unknown split)."""
    fresh_entities: int = 20
    fresh_seed: int | None = None
    """Seed of the fresh world; default ``seed + 1``."""
    stream: int = 0
    """Generated entities for training (all values new, so copying is the only way to answer)."""
    web_pages: int = 2
    train_views: int = 8
    test_views: int = 2
    stream_views: int = 1
    places: int | None = None
    """Size of each world's pool of places; default ``max(4, entities // 8)``."""
    kinds: tuple[str, ...] = field(default_factory=lambda: tuple(KINDS))

    def __post_init__(self) -> None:
        for name in ("entities", "fresh_entities", "stream"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must not be negative")
        for name in ("train_views", "test_views", "stream_views"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")
        for name in ("known_fraction", "heldout_fraction"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"{name} must lie between 0 and 1")
        if not 0 <= self.web_pages <= MAX_WEB_PAGES:
            raise ValueError(f"web_pages must lie between 0 and {MAX_WEB_PAGES}")
        if self.places is not None and self.places < 1:
            raise ValueError("places must be at least 1")
        unknown = [k for k in self.kinds if k not in KINDS]
        if unknown or not self.kinds:
            raise ValueError(f"kinds must be some of {', '.join(KINDS)}; got {', '.join(self.kinds)}")

    @property
    def resolved_fresh_seed(self) -> int:
        return self.seed + 1 if self.fresh_seed is None else self.fresh_seed

    def pool_size(self, entities: int) -> int:
        return self.places if self.places is not None else max(4, entities // 8)


def _groups(config: WorldConfig, rng: random.Random) -> list[Group]:
    n = config.entities
    known = round(n * config.known_fraction)
    heldout = round((n - known) * config.heldout_fraction)
    sizes: list[tuple[Group, int]] = [
        ("known", known),
        ("heldout", heldout),
        ("unknown", n - known - heldout),
    ]
    ranked = [group for group, size in sizes for _ in range(size)]
    order = list(range(n))
    rng.shuffle(order)
    groups: list[Group] = ["known"] * n
    for rank, i in enumerate(order):
        groups[i] = ranked[rank]
    return groups


def _entity(name: str, index: int, group: Group, seed: int, config: WorldConfig, places: list[str]) -> Entity:
    kind = config.kinds[index % len(config.kinds)]
    return make_entity(name, kind, group, random.Random(f"entity:{seed}:{name}"), places)


def plan_world(config: WorldConfig) -> list[Entity]:
    """The entities of the main world, then the fresh world's, then the stream's."""
    names = NameGenerator(random.Random(f"names:{config.seed}"))
    main_names = [names.unique(ENTITY_SYLLABLES) for _ in range(config.entities)]
    places = place_pool(names, config.pool_size(config.entities))
    groups = _groups(config, random.Random(f"groups:{config.seed}"))
    world = [_entity(name, i, groups[i], config.seed, config, places) for i, name in enumerate(main_names)]
    fresh_seed = config.resolved_fresh_seed
    fresh_names = NameGenerator(random.Random(f"names:{fresh_seed}"), avoid=names.used)
    fresh = [fresh_names.unique(ENTITY_SYLLABLES) for _ in range(config.fresh_entities)]
    fresh_places = place_pool(fresh_names, config.pool_size(config.fresh_entities))
    world += [_entity(name, i, "fresh", fresh_seed, config, fresh_places) for i, name in enumerate(fresh)]
    names.used |= fresh_names.used
    for i in range(config.stream):
        world.append(_entity(names.unique(ENTITY_SYLLABLES), i, "stream", config.seed, config, []))
    return world
