"""From an OpenAI request to the agent's inputs: checks, the conversation, limits and sampling.

How a chat maps onto the protocol:

- The last message must be the user's; its text is the question.
- The search image is the latest image in the conversation (usually the last message's). It is
  moved out of the history into the protocol's first turn, so it is not sent twice.
- Earlier messages (system, developer, user, assistant) become the history, keeping their other
  images. Tool and function messages, and assistant tool calls, are refused.
- At most ``Settings.max_images`` images in a request, each decoded, bounded in bytes and pixels.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass
from typing import Any

from mmsr_serve.agent.limits import Limits
from mmsr_serve.agent.loop import Sampling
from mmsr_serve.api.runs import settle
from mmsr_serve.api.schemas import ChatCompletionRequest, RequestMessage
from mmsr_serve.api.settings import Settings
from mmsr_serve.backends.base import ImagePart, Message, Part, TextPart
from mmsr_serve.errors import ImageError, InvalidInputError, MMSRError
from mmsr_serve.images import Fetch, ImageGeometry, InputImage, load_image
from mmsr_serve.search.location import SearchLocation


@dataclass(frozen=True)
class Conversation:
    question: str
    image: InputImage | None
    history: list[Message]


def _refuse(param: str, why: str = "is not supported by this server") -> InvalidInputError:
    return InvalidInputError(f"{param} {why}", param=param)


def check_supported(req: ChatCompletionRequest, settings: Settings) -> None:
    """Refuse (400, naming the field) what this server cannot honour, instead of ignoring it."""
    unsupported = {
        "audio": req.audio is not None,
        "modalities": bool(req.modalities) and set(req.modalities or ()) != {"text"},
        "functions": bool(req.functions),
        "function_call": req.function_call not in (None, "none"),
        "tools": bool(req.tools),
        "tool_choice": req.tool_choice not in (None, "none", "auto"),
        "logit_bias": bool(req.logit_bias),
        "logprobs": bool(req.logprobs),
        "top_logprobs": bool(req.top_logprobs),
        "frequency_penalty": bool(req.frequency_penalty),
        "presence_penalty": bool(req.presence_penalty),
        "prediction": req.prediction is not None,
        "response_format": req.response_format is not None and req.response_format.get("type") != "text",
        "reasoning_effort": req.reasoning_effort is not None,
        "verbosity": req.verbosity is not None,
    }
    for name, refused in unsupported.items():
        if refused:
            raise _refuse(name)
    if req.stream_options is not None and not req.stream:
        raise _refuse("stream_options", "is only allowed when stream is true")
    if (req.n or 1) > settings.max_n:
        raise _refuse("n", f"must be at most {settings.max_n} on this server")
    if isinstance(req.stop, list) and len(req.stop) > 4:
        raise _refuse("stop", "may hold at most 4 sequences")


LOW_CONTEXT_TOP_K = 3


def limits_for(req: ChatCompletionRequest, settings: Settings) -> Limits:
    """The server's limits, lowered by the request's extras; asking for more than the server's is a 400."""
    base = settings.limits()
    asked = {
        "max_turns": ("max_turns", req.max_turns),
        "max_image_searches": ("max_image_searches", req.max_image_searches),
        "max_text_searches": ("max_text_searches", req.max_text_searches),
        "top_k": ("search_top_k", req.search_top_k),
        "max_new_tokens": (
            "max_completion_tokens" if req.max_completion_tokens is not None else "max_tokens",
            req.max_completion_tokens if req.max_completion_tokens is not None else req.max_tokens,
        ),
    }
    overrides: dict[str, object] = {}
    for field, (param, value) in asked.items():
        if value is None:
            continue
        ceiling = getattr(base, field)
        if value > ceiling:
            raise _refuse(param, f"must be at most {ceiling} on this server")
        overrides[field] = value
    options = req.web_search_options
    if options is not None and options.search_context_size == "low":
        # OpenAI's "low": less search context. Here: at most 3 results shown per search and one
        # text search; "medium" (OpenAI's default) and "high" keep the server's limits. The
        # request's own mmsr extras, when given, decide.
        overrides.setdefault("top_k", min(base.top_k, LOW_CONTEXT_TOP_K))
        overrides.setdefault("max_text_searches", min(base.max_text_searches, 1))
    return base.with_overrides(**overrides)


def user_location(req: ChatCompletionRequest) -> SearchLocation | None:
    """``web_search_options.user_location``, for the search providers that localise results."""
    options = req.web_search_options
    where = options.user_location.approximate if options and options.user_location else None
    if where is None:
        return None
    return SearchLocation(where.country, where.region, where.city, where.timezone)


def sampling_for(req: ChatCompletionRequest, index: int, stops: Sequence[str]) -> Sampling:
    """Choice ``index`` of ``n``: a given seed is offset by the index so the runs differ;
    ``stops`` is :func:`stop_sequences` of the request, computed once by the caller."""
    seed = None if req.seed is None else req.seed + index
    return Sampling(
        temperature=req.temperature,
        top_p=req.top_p,
        seed=seed,
        stop=tuple(stops),
        top_k=req.top_k,
        min_p=req.min_p,
        repetition_penalty=req.repetition_penalty,
    )


def stop_sequences(req: ChatCompletionRequest) -> list[str]:
    stops = [req.stop] if isinstance(req.stop, str) else list(req.stop or ())
    return [s for s in stops if s]


async def read_conversation(
    req: ChatCompletionRequest, settings: Settings, fetch: Fetch | None, geometry: ImageGeometry | None = None
) -> Conversation:
    """The conversation of ``req``; its images decoded within the server's bounds, or resized to
    the checkpoint's ``geometry`` (its prompt pack's image sizes) when it has one."""
    if len(req.messages) > settings.max_messages:
        raise _refuse(
            "messages", f"has {len(req.messages)} messages, more than the {settings.max_messages} allowed"
        )
    parts_count = sum(len(m.content) for m in req.messages if isinstance(m.content, list))
    if parts_count > settings.max_content_parts:
        raise _refuse(
            "messages", f"has {parts_count} content parts, more than the {settings.max_content_parts} allowed"
        )
    last = req.messages[-1]
    if last.role != "user":
        raise _refuse("messages", "must end with a user message")
    parts = [_parts(m, i) for i, m in enumerate(req.messages)]
    image_refs = [
        (i, j, url) for i, msg in enumerate(parts) for j, (kind, url) in enumerate(msg) if kind == "image"
    ]
    if len(image_refs) > settings.max_images:
        raise ImageError(
            f"too many images: {len(image_refs)} (at most {settings.max_images})", param="messages"
        )
    loaded = dict(zip(
        [(i, j) for i, j, _ in image_refs],
        await _all([_load(url, f"messages[{i}].content[{j}].image_url", settings, fetch, geometry)
                    for i, j, url in image_refs]),
        strict=True,
    ))  # fmt: skip
    search_image = (image_refs[-1][0], image_refs[-1][1]) if image_refs else None
    question = "".join(text for kind, text in parts[-1] if kind == "text").strip()
    if not question:
        raise _refuse(f"messages[{len(parts) - 1}].content", "must contain the question as text")
    history: list[Message] = []
    for i, msg in enumerate(req.messages[:-1]):
        content: list[Part] = []
        for j, (kind, value) in enumerate(parts[i]):
            if kind == "text":
                content.append(TextPart(value))
            elif (i, j) != search_image:
                content.append(ImagePart.of(loaded[i, j]))
        role = "system" if msg.role in ("system", "developer") else msg.role
        if content:
            history.append(Message(role, content))  # type: ignore[arg-type]
    image = loaded[search_image] if search_image else None
    return Conversation(question, image, history)


def _parts(msg: RequestMessage, index: int) -> list[tuple[str, str]]:
    """The message's content as ("text", text) and ("image", url) pairs."""
    where = f"messages[{index}]"
    if msg.role in ("tool", "function"):
        raise _refuse(f"{where}.role", f"'{msg.role}' is not supported (this server does not call tools)")
    if msg.tool_calls:
        raise _refuse(f"{where}.tool_calls")
    if msg.content is None:
        return []
    if isinstance(msg.content, str):
        return [("text", msg.content)]
    out: list[tuple[str, str]] = []
    for j, part in enumerate(msg.content):
        if part.type == "text" and part.text is not None:
            out.append(("text", part.text))
        elif part.type == "image_url" and part.image_url is not None and msg.role == "user":
            out.append(("image", part.image_url.url))
        else:
            raise _refuse(
                f"{where}.content[{j}].type", f"'{part.type}' is not supported in a {msg.role} message"
            )
    return out


async def _all(loads: list[Coroutine[Any, Any, InputImage]]) -> list[InputImage]:
    """The images loaded at once (fetches of image URLs overlap); the first failure cancels the
    rest and is raised. A single image is loaded in the request's own task."""
    if len(loads) == 1:
        return [await loads[0]]
    tasks = [asyncio.ensure_future(load) for load in loads]
    try:
        return list(await asyncio.gather(*tasks))
    finally:
        for task in tasks:
            task.cancel()
        await settle(tasks)


async def _load(
    url: str, param: str, settings: Settings, fetch: Fetch | None, geometry: ImageGeometry | None
) -> InputImage:
    is_http = url.startswith(("http://", "https://"))
    if not url.startswith("data:") and not is_http:
        raise ImageError("image_url must be a data: URL or an http(s) URL", param=param)
    if is_http and not settings.allow_image_urls:
        raise ImageError("this server accepts images as data: URLs only", param=param)
    try:
        return await load_image(
            url,
            max_pixels=settings.max_image_pixels,
            max_bytes=settings.max_image_bytes,
            fetch=fetch,
            geometry=geometry,
        )
    except InvalidInputError as exc:
        raise ImageError(str(exc), param=param) from exc
    except MMSRError as exc:  # the safe fetcher's refusals and failures are the caller's input
        raise ImageError(f"cannot fetch the image: {exc}", param=param) from exc
