"""A miniature, fully invented world to train and evaluate searching models on (docs/world.md).

``build_world(OUT, WorldConfig(seed=0))`` (or ``mmsr world build OUT``) writes a corpus in the
local index format and question sets split by what a model can know without searching.
"""

from mmsr_bench.world.build import build_world, load_manifest
from mmsr_bench.world.entities import KINDS, Attribute, Entity, Kind
from mmsr_bench.world.images import PAGE_VIEW, QUERY_VIEW, ViewStrength, draw_master, make_view
from mmsr_bench.world.plan import WorldConfig, plan_world
from mmsr_bench.world.questions import SPLITS, Question, read_questions, write_questions

__all__ = [
    "KINDS",
    "PAGE_VIEW",
    "QUERY_VIEW",
    "SPLITS",
    "Attribute",
    "Entity",
    "Kind",
    "Question",
    "ViewStrength",
    "WorldConfig",
    "build_world",
    "draw_master",
    "load_manifest",
    "make_view",
    "plan_world",
    "read_questions",
    "write_questions",
]
