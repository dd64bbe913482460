"""mmsr_serve: serve vision-language models that search on demand (the MMSearch-R1 protocol).

The SDK surface::

    from mmsr_serve import SearchAgent, Limits
    from mmsr_serve.backends import OpenAIBackend, ScriptedBackend, TransformersBackend
    from mmsr_serve.search import LocalIndex

Heavy libraries (torch, transformers) are imported only by the backends that need them.
"""

from mmsr_serve.agent import (
    AgentResult,
    Event,
    Finished,
    Limits,
    PromptPack,
    Sampling,
    SearchAgent,
    SearchFinished,
    SearchRecord,
    SearchStarted,
    TextDelta,
    TurnFinished,
    TurnRecord,
    TurnStarted,
    Usage,
    default_pack,
    import_release_prompts,
    load_pack,
)
from mmsr_serve.errors import (
    BackendError,
    BackendTimeout,
    ConfigError,
    ImageError,
    InvalidInputError,
    MMSRError,
    SearchError,
)
from mmsr_serve.images import InputImage, load_image

__version__ = "0.1.0"

__all__ = [
    "AgentResult",
    "BackendError",
    "BackendTimeout",
    "ConfigError",
    "Event",
    "Finished",
    "ImageError",
    "InputImage",
    "InvalidInputError",
    "Limits",
    "MMSRError",
    "PromptPack",
    "Sampling",
    "SearchAgent",
    "SearchError",
    "SearchFinished",
    "SearchRecord",
    "SearchStarted",
    "TextDelta",
    "TurnFinished",
    "TurnRecord",
    "TurnStarted",
    "Usage",
    "__version__",
    "default_pack",
    "import_release_prompts",
    "load_image",
    "load_pack",
]
