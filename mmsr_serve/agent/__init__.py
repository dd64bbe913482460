"""The protocol and the loop: prompt packs, the turn parser, limits, events, the agent."""

from mmsr_serve.agent.agent import SearchAgent
from mmsr_serve.agent.events import (
    AgentFinishReason,
    AgentResult,
    Event,
    Finished,
    SearchFinished,
    SearchRecord,
    SearchStarted,
    TextDelta,
    TurnFinished,
    TurnRecord,
    TurnStarted,
    Usage,
)
from mmsr_serve.agent.limits import Limits
from mmsr_serve.agent.loop import Sampling, Tools, agent_loop
from mmsr_serve.agent.parser import (
    STOP_STRINGS,
    FormatCheck,
    ParsedTurn,
    check_trajectory,
    is_valid_trajectory,
    parse_turn,
    restore_stop,
)
from mmsr_serve.agent.prompts import PromptPack, default_pack, import_release_prompts, load_pack

__all__ = [
    "STOP_STRINGS",
    "AgentFinishReason",
    "AgentResult",
    "Event",
    "Finished",
    "FormatCheck",
    "Limits",
    "ParsedTurn",
    "PromptPack",
    "Sampling",
    "SearchAgent",
    "SearchFinished",
    "SearchRecord",
    "SearchStarted",
    "TextDelta",
    "Tools",
    "TurnFinished",
    "TurnRecord",
    "TurnStarted",
    "Usage",
    "agent_loop",
    "check_trajectory",
    "default_pack",
    "import_release_prompts",
    "is_valid_trajectory",
    "load_pack",
    "parse_turn",
    "restore_stop",
]
