"""The protocol and the loop: its tags and shapes (``protocol``), prompt packs, the turn parser,
limits, events, the agent."""

from mmsr_serve.agent.agent import SearchAgent
from mmsr_serve.agent.events import (
    AgentFinishReason,
    AgentResult,
    AnswerDelta,
    Event,
    Finished,
    ReasoningDelta,
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
from mmsr_serve.agent.protocol import SearchMode

__all__ = [
    "STOP_STRINGS",
    "AgentFinishReason",
    "AgentResult",
    "AnswerDelta",
    "Event",
    "Finished",
    "FormatCheck",
    "Limits",
    "ParsedTurn",
    "PromptPack",
    "ReasoningDelta",
    "Sampling",
    "SearchAgent",
    "SearchFinished",
    "SearchMode",
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
