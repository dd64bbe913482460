"""The OpenAI chat completions protocol as pydantic models, in the field order of the official spec.

Our additions sit in a separate block at the end of each model, marked "mmsr extensions". They are
all optional: a client that does not know them sends and reads plain OpenAI. Unknown request
fields are refused (400 naming the field), as OpenAI does, so a mistyped extra never goes unnoticed.
Fields the spec defines but this server cannot honour are accepted by the schema and refused by
:func:`mmsr_serve.api.convert.check_supported` with a 400 naming them.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    model_validator,
)

from mmsr_serve.agent.protocol import SearchMode


def _is_none(value: object) -> bool:
    return value is None


def _omitted_if_none() -> Any:
    """A response field left out of the JSON when it is None (where OpenAI omits rather than
    sends null); pydantic-core checks it field by field, with no Python pass over the whole dump."""
    return Field(default=None, exclude_if=_is_none)


# ---------------------------------------------------------------------------------------- request


class ImageURL(BaseModel):
    url: str
    detail: Literal["auto", "low", "high"] | None = None


class ContentPart(BaseModel):
    """One part of a message's content. ``text`` and ``image_url`` parts are supported; other types
    (``input_audio``, ``file``, ``refusal``) are refused by name in convert."""

    model_config = ConfigDict(extra="allow")

    type: str
    text: str | None = None
    image_url: ImageURL | None = None


class RequestMessage(BaseModel):
    model_config = ConfigDict(extra="allow")

    role: Literal["developer", "system", "user", "assistant", "tool", "function"]
    content: str | list[ContentPart] | None = None
    name: str | None = None
    tool_calls: list[Any] | None = None
    tool_call_id: str | None = None


class StreamOptions(BaseModel):
    include_usage: bool | None = None
    include_obfuscation: bool | None = None


class ApproximateLocation(BaseModel):
    model_config = ConfigDict(extra="forbid")

    city: str | None = None
    country: str | None = Field(None, pattern=r"^[A-Za-z]{2}$")
    """ISO 3166-1 alpha-2, as OpenAI takes it."""
    region: str | None = None
    timezone: str | None = None


class UserLocation(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: Literal["approximate"] = "approximate"
    approximate: ApproximateLocation | None = None


class WebSearchOptions(BaseModel):
    """OpenAI's search-model option (``gpt-4o-search-preview``), mapped onto the search limits
    (``search_context_size``: convert.limits_for); ``user_location`` is checked and accepted."""

    model_config = ConfigDict(extra="forbid")

    search_context_size: Literal["low", "medium", "high"] | None = None
    user_location: UserLocation | None = None


# Ceilings checked before any message is validated; ``Settings.max_messages`` / ``max_content_parts``
# (at most these) are the limits a server applies.
MAX_MESSAGES = 10_000
MAX_PARTS = 20_000


def lone_surrogate(value: Any, where: str) -> str | None:
    """Where in ``value`` a string holds a lone surrogate (JSON allows ``"\\udc80"``; UTF-8,
    the model server and every JSON encoder downstream refuse it), or None."""
    if isinstance(value, str):
        if value.isascii():
            return None
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return where
        return None
    if isinstance(value, dict):
        items: Any = value.items()
    elif isinstance(value, list):
        items = enumerate(value)
    else:
        return None
    for key, item in items:
        name = f"{where}[{key}]" if isinstance(key, int) else (f"{where}.{key}" if where else str(key))
        if isinstance(key, str) and not key.isascii() and lone_surrogate(key, name):
            return name
        if found := lone_surrogate(item, name):
            return found
    return None


def not_too_many(data: Any, field: str, noun: str) -> Any:
    """A request's raw JSON, refused (ValueError) when its ``field`` list holds more than
    MAX_MESSAGES entries or MAX_PARTS content parts. Checked before validating each entry:
    validating a million of them would hold the event loop for seconds. The server's own limit
    (``max_messages``) is lower."""
    entries = data.get(field) if isinstance(data, dict) else None
    if isinstance(entries, list):
        if len(entries) > MAX_MESSAGES:
            raise ValueError(f"{field}: {len(entries)} {noun}, more than the {MAX_MESSAGES} accepted")
        parts = sum(
            len(m["content"]) for m in entries if isinstance(m, dict) and isinstance(m.get("content"), list)
        )
        if parts > MAX_PARTS:
            raise ValueError(f"{field}: {parts} content parts, more than the {MAX_PARTS} accepted")
    return data


def valid_unicode(data: Any) -> Any:
    """A request's raw JSON, refused when a string in it holds a lone surrogate; the message
    names the field, never the value: an error body must render too."""
    if where := lone_surrogate(data, ""):
        raise ValueError(f"{where} is not valid Unicode (a lone surrogate)")
    return data


class ChatCompletionRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    @model_validator(mode="before")
    @classmethod
    def _not_too_many(cls, data: Any) -> Any:
        return not_too_many(data, "messages", "messages")

    @model_validator(mode="before")
    @classmethod
    def _valid_unicode(cls, data: Any) -> Any:
        return valid_unicode(data)

    messages: list[RequestMessage] = Field(min_length=1)
    model: str | None = None
    audio: Any = None
    frequency_penalty: float | None = None
    function_call: Any = None
    functions: list[Any] | None = None
    logit_bias: dict[str, float] | None = None
    logprobs: bool | None = None
    max_completion_tokens: int | None = Field(None, ge=1)
    max_tokens: int | None = Field(None, ge=1)
    metadata: dict[str, str] | None = None
    modalities: list[str] | None = None
    n: int | None = Field(None, ge=1)
    parallel_tool_calls: bool | None = None
    prediction: Any = None
    presence_penalty: float | None = None
    prompt_cache_key: str | None = None
    reasoning_effort: str | None = None
    response_format: dict[str, Any] | None = None
    safety_identifier: str | None = None
    seed: int | None = None
    service_tier: str | None = None
    stop: str | list[str] | None = None
    store: bool | None = None
    stream: bool | None = False
    stream_options: StreamOptions | None = None
    temperature: float | None = Field(None, ge=0, le=2)
    tool_choice: Any = None
    tools: list[Any] | None = None
    top_logprobs: int | None = None
    top_p: float | None = Field(None, gt=0, le=1)
    user: str | None = None
    verbosity: str | None = None
    web_search_options: WebSearchOptions | None = None

    # --- mmsr extensions (send with openai-python's ``extra_body``) ---
    search_mode: SearchMode = "auto"
    """``auto``: the model decides; ``off``: plain chat, no protocol; ``always``: the RAG workflow."""
    max_turns: int | None = Field(None, ge=1)
    max_image_searches: int | None = Field(None, ge=0)
    max_text_searches: int | None = Field(None, ge=0)
    search_top_k: int | None = Field(None, ge=1)
    # --- vLLM's sampling extras (openai-python: extra_body), passed to the model ---
    top_k: int | None = Field(None, ge=-1)
    """-1 (or 0): no top-k filtering, as in vLLM."""
    min_p: float | None = Field(None, ge=0, le=1)
    repetition_penalty: float | None = Field(None, gt=0)
    return_trace: bool = False


# --------------------------------------------------------------------------------------- response


class URLCitation(BaseModel):
    end_index: int
    start_index: int
    title: str
    url: str


class Annotation(BaseModel):
    type: Literal["url_citation"] = "url_citation"
    url_citation: URLCitation


class ResponseMessage(BaseModel):
    content: str | None
    refusal: str | None = None
    role: Literal["assistant"] = "assistant"
    annotations: list[Annotation] = Field(default_factory=list)

    # --- mmsr extensions ---
    reasoning_content: str | None = _omitted_if_none()
    """The model's reasoning across its turns (the ``<reason>`` blocks), as vLLM's reasoning parsers
    name it; ``reasoning`` holds the same text under the newer name."""
    reasoning: str | None = _omitted_if_none()


class Choice(BaseModel):
    finish_reason: str
    """``stop``, ``length``, or (mmsr) ``max_turns`` / ``invalid`` when the model never answered."""
    index: int
    logprobs: None = None
    message: ResponseMessage


class Usage(BaseModel):
    completion_tokens: int
    prompt_tokens: int
    total_tokens: int

    # --- mmsr extensions ---
    num_search_queries: int | None = _omitted_if_none()
    search_calls: dict[str, int] | None = _omitted_if_none()
    """``{"image": n, "text": m}``"""


class SearchResult(BaseModel):
    """(mmsr) A source shown to the model."""

    title: str
    url: str
    snippet: str
    kind: Literal["image", "text"]


class ChatCompletion(BaseModel):
    id: str
    choices: list[Choice]
    created: int
    model: str
    object: Literal["chat.completion"] = "chat.completion"
    system_fingerprint: str | None = None
    usage: Usage

    # --- mmsr extensions ---
    search_results: list[SearchResult] = Field(default_factory=list)
    trace: dict[str, Any] | None = _omitted_if_none()


class ChoiceDelta(BaseModel):
    content: str | None = _omitted_if_none()
    refusal: str | None = _omitted_if_none()
    role: Literal["assistant"] | None = _omitted_if_none()
    annotations: list[Annotation] | None = _omitted_if_none()

    # --- mmsr extensions ---
    reasoning_content: str | None = _omitted_if_none()
    reasoning: str | None = _omitted_if_none()
    search_events: list[dict[str, Any]] | None = _omitted_if_none()
    """Search progress, one event per chunk: ``[{"index", "status": "started"|"finished", "kind", ...}]``.

    A list whose entries carry a running ``index`` (per choice) and are never sent twice, so that
    delta accumulators (openai-python's stream helper, LangChain's and LiteLLM's chunk merging)
    append each event instead of merging two events' fields."""


class ChunkChoice(BaseModel):
    delta: ChoiceDelta
    finish_reason: str | None = None
    index: int
    logprobs: None = None


class ChatCompletionChunk(BaseModel):
    id: str
    choices: list[ChunkChoice]
    created: int
    model: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    system_fingerprint: str | None = None
    usage: Usage | None = _omitted_if_none()

    # --- mmsr extensions (on a choice's finish chunk) ---
    search_results: list[SearchResult] | None = _omitted_if_none()
    trace: dict[str, Any] | None = _omitted_if_none()


class ModelCard(BaseModel):
    id: str
    created: int
    object: Literal["model"] = "model"
    owned_by: str = "mmsr"


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


class ErrorBody(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class ErrorResponse(BaseModel):
    error: ErrorBody
