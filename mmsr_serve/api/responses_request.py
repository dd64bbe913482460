"""``POST /v1/responses`` requests, read as the chat completion request the loop already serves.

A Responses request maps onto a chat completion request, so that one set of checks, limits,
sampling and image loading serves both APIs:

- ``instructions`` -> a system message first; ``input`` (a string, or a list of items) -> the
  messages. Message items take ``input_text`` / ``input_image`` (an image URL) parts, and
  ``output_text`` / ``refusal`` parts in assistant messages. ``reasoning`` and ``web_search_call``
  items a client sends back from an earlier response are skipped (the loop re-runs its own
  searches; the answer stays in the assistant message).
- ``max_output_tokens`` -> the tokens per model turn (``max_completion_tokens``).
- ``tools``: ``web_search`` / ``web_search_preview`` tools are accepted, their
  ``search_context_size`` and ``user_location`` read as ``web_search_options``; any other tool is
  refused (this server calls no client tools). Searching is the server's default whether or not a
  web search tool is listed; ``tool_choice: "none"`` allows no search, ``"required"`` (or a
  ``web_search`` choice) searches first (``search_mode: always``).
- Not stored: ``previous_response_id`` and ``conversation`` are refused (400), ``store`` is
  accepted and nothing is kept; ``background`` is refused.
- mmsr's extras (``search_mode``, ``max_turns``, ``max_image_searches``, ``max_text_searches``,
  ``search_top_k``, ``return_trace``) and vLLM's sampling extras pass through as in chat
  completions.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from mmsr_serve.agent.protocol import SearchMode
from mmsr_serve.api.schemas import (
    ChatCompletionRequest,
    StreamOptions,
    WebSearchOptions,
    not_too_many,
    valid_unicode,
)
from mmsr_serve.errors import InvalidInputError

WEB_SEARCH_TOOLS = frozenset(
    {"web_search", "web_search_preview", "web_search_2025_08_26", "web_search_preview_2025_03_11"}
)
# Items of an earlier response that a client may send back; the loop does not need them.
SKIPPED_ITEMS = frozenset({"reasoning", "web_search_call"})
REFUSED_INCLUDES = ("message.output_text.logprobs",)


class InputContent(BaseModel):
    model_config = ConfigDict(extra="allow")

    type: str
    text: str | None = None
    image_url: str | None = None
    file_id: str | None = None
    detail: Literal["auto", "low", "high", "original"] | None = None


class InputItem(BaseModel):
    """A message (``type`` "message" or absent) or another item type, checked by name below."""

    model_config = ConfigDict(extra="allow")

    type: str | None = None
    role: Literal["user", "assistant", "system", "developer"] | None = None
    content: str | list[InputContent] | None = None


class TextFormat(BaseModel):
    model_config = ConfigDict(extra="allow")

    type: str = "text"


class TextOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    format: TextFormat | None = None
    verbosity: str | None = None


class ReasoningOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    effort: str | None = None
    summary: str | None = None
    generate_summary: str | None = None


class ResponsesRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    @model_validator(mode="before")
    @classmethod
    def _not_too_many(cls, data: Any) -> Any:
        return not_too_many(data, "input", "items")

    @model_validator(mode="before")
    @classmethod
    def _valid_unicode(cls, data: Any) -> Any:
        return valid_unicode(data)

    input: str | list[InputItem]
    model: str | None = None
    instructions: str | None = None
    max_output_tokens: int | None = Field(None, ge=1)
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, gt=0, le=1)
    stream: bool | None = False
    stream_options: StreamOptions | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None
    max_tool_calls: int | None = None
    include: list[str] | None = None
    store: bool | None = None
    metadata: dict[str, str] | None = None
    previous_response_id: str | None = None
    conversation: Any = None
    background: bool | None = None
    prompt: Any = None
    reasoning: ReasoningOptions | None = None
    text: TextOptions | None = None
    truncation: Literal["auto", "disabled"] | None = None
    top_logprobs: int | None = None
    user: str | None = None
    service_tier: str | None = None
    safety_identifier: str | None = None
    prompt_cache_key: str | None = None
    prompt_cache_retention: str | None = None

    # --- mmsr extensions and vLLM's sampling extras, as on chat completions ---
    search_mode: SearchMode | None = None
    max_turns: int | None = Field(None, ge=1)
    max_image_searches: int | None = Field(None, ge=0)
    max_text_searches: int | None = Field(None, ge=0)
    search_top_k: int | None = Field(None, ge=1)
    top_k: int | None = Field(None, ge=-1)
    min_p: float | None = Field(None, ge=0, le=1)
    repetition_penalty: float | None = Field(None, gt=0)
    seed: int | None = None
    return_trace: bool = False


def _refuse(param: str, why: str = "is not supported by this server") -> InvalidInputError:
    return InvalidInputError(f"{param} {why}", param=param)


def to_chat(req: ResponsesRequest) -> ChatCompletionRequest:
    """The chat completion request this Responses request asks for; 400 for what cannot map."""
    _check(req)
    options, mode, no_search = _tools(req)
    messages: list[dict[str, Any]] = []
    if req.instructions:
        messages.append({"role": "system", "content": req.instructions})
    if isinstance(req.input, str):
        messages.append({"role": "user", "content": req.input})
    else:
        for i, item in enumerate(req.input):
            message = _message(item, f"input[{i}]")
            if message is not None:
                messages.append(message)
    if not messages or messages[-1]["role"] != "user":
        raise _refuse("input", "must end with a user message")
    try:
        return _chat_request(req, messages, options, mode, no_search)
    except ValidationError as exc:  # a value chat completions bounds differently: still the caller's
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "input"
        raise _refuse(where, f"is not valid: {first['msg']}") from None


def _chat_request(
    req: ResponsesRequest,
    messages: list[dict[str, Any]],
    options: WebSearchOptions | None,
    mode: SearchMode,
    no_search: bool,
) -> ChatCompletionRequest:
    return ChatCompletionRequest.model_validate(
        {
            "messages": messages,
            "model": req.model,
            "max_completion_tokens": req.max_output_tokens,
            "temperature": req.temperature,
            "top_p": req.top_p,
            "stream": req.stream,
            "web_search_options": options,
            "search_mode": req.search_mode or mode,
            "max_turns": req.max_turns,
            "max_image_searches": 0 if no_search else req.max_image_searches,
            "max_text_searches": 0 if no_search else req.max_text_searches,
            "search_top_k": req.search_top_k,
            "top_k": req.top_k,
            "min_p": req.min_p,
            "repetition_penalty": req.repetition_penalty,
            "seed": req.seed,
            "return_trace": req.return_trace,
            "metadata": req.metadata,
            "user": req.user,
        }
    )


def _check(req: ResponsesRequest) -> None:
    if req.previous_response_id is not None:
        raise _refuse(
            "previous_response_id",
            "is not supported: this server stores no responses (send the conversation in input)",
        )
    if req.conversation is not None:
        raise _refuse("conversation", "is not supported: this server stores no conversations")
    if req.background:
        raise _refuse("background")
    if req.prompt is not None:
        raise _refuse("prompt", "is not supported: this server stores no prompt templates")
    if req.max_tool_calls is not None:
        raise _refuse("max_tool_calls", "is not supported: use max_image_searches and max_text_searches")
    if req.top_logprobs:
        raise _refuse("top_logprobs")
    for name in REFUSED_INCLUDES:
        if name in (req.include or ()):
            raise _refuse("include", f"value '{name}' is not supported by this server")
    if req.reasoning is not None and req.reasoning.effort is not None:
        raise _refuse("reasoning.effort")
    if req.text is not None:
        if req.text.format is not None and req.text.format.type != "text":
            raise _refuse("text.format", f"type '{req.text.format.type}' is not supported by this server")
        if req.text.verbosity is not None:
            raise _refuse("text.verbosity")


def _tools(req: ResponsesRequest) -> tuple[WebSearchOptions | None, SearchMode, bool]:
    """The web search tool's options, the search mode and whether no search is allowed."""
    options: WebSearchOptions | None = None
    for i, tool in enumerate(req.tools or ()):
        kind = tool.get("type")
        if kind not in WEB_SEARCH_TOOLS:
            why = f"'{kind}' is not supported (this server calls no client tools)"
            raise _refuse(f"tools[{i}].type", why)
        location = tool.get("user_location")
        try:
            # The Responses tool's location is flat ({type, city, country, ...}); chat's nests it.
            where = {k: v for k, v in location.items() if k != "type"} if isinstance(location, dict) else None
            options = WebSearchOptions.model_validate(
                {
                    "search_context_size": tool.get("search_context_size"),
                    "user_location": None if where is None else {"type": "approximate", "approximate": where},
                }
            )
        except ValidationError as exc:
            first = exc.errors()[0]
            field = ".".join(str(p) for p in first["loc"] if p != "approximate")
            raise _refuse(f"tools[{i}].{field}", f"is not valid: {first['msg']}") from None
        if tool.get("filters"):
            raise _refuse(f"tools[{i}].filters")
    choice = req.tool_choice
    if choice is None or choice == "auto":
        return options, "auto", False
    if choice == "none":
        return options, "auto", True
    if choice == "required" or (isinstance(choice, dict) and choice.get("type") in WEB_SEARCH_TOOLS):
        return options, "always", False
    raise _refuse("tool_choice", "must be auto, none, required or a web search tool on this server")


def _message(item: InputItem, where: str) -> dict[str, Any] | None:
    kind = item.type or "message"
    if kind in SKIPPED_ITEMS:
        return None
    if kind != "message":
        raise _refuse(f"{where}.type", f"'{kind}' is not supported (this server calls no client tools)")
    if item.role is None:
        raise _refuse(f"{where}.role", "is required")
    if item.content is None or isinstance(item.content, str):
        return {"role": item.role, "content": item.content}
    parts: list[dict[str, Any]] = []
    for j, part in enumerate(item.content):
        at = f"{where}.content[{j}]"
        if part.type in ("input_text", "output_text", "text") and part.text is not None:
            parts.append({"type": "text", "text": part.text})
        elif part.type == "refusal":
            continue
        elif part.type == "input_image" and item.role == "user":
            if part.image_url is None:
                raise _refuse(f"{at}.file_id", "is not supported: send the image as image_url")
            detail = None if part.detail == "original" else part.detail
            parts.append({"type": "image_url", "image_url": {"url": part.image_url, "detail": detail}})
        else:
            raise _refuse(f"{at}.type", f"'{part.type}' is not supported in a {item.role} message")
    return {"role": item.role, "content": parts}
