"""The token-level policy backend: the serving loop's model, seen as token ids for training.

:class:`PolicyBackend` is a :class:`~mmsr_serve.backends.base.ModelBackend` for ONE trajectory. The
agent loop drives it exactly as it drives a served model (same prompts, parser, limits, result
rendering); behind the interface the backend keeps the trajectory as token ids (:class:`TokenTrace`):

- First turn: the conversation is rendered with the processor's chat template (generation prompt
  included) and tokenised once, images expanded: these are the prompt ids.
- Every model turn: a :class:`TokenGenerator` samples from the whole token sequence so far. The
  sampled ids are appended exactly as sampled (never re-tokenised from text), with ``env_mask`` 1.
- Every environment turn (search results, follow-up prompts, and the chat-template glue around
  them: the end of the assistant turn, the user header, the next generation prompt): the suffix by
  which the chat-template render of the new conversation extends the render of the old one plus
  the model's text. It is tokenised alone (with its images) and appended with ``env_mask`` 0. A
  template whose render of the new conversation does not start with the old one (one that rewrites
  earlier turns) is refused with :class:`TemplateError`: its training sequences would not be what
  serving feeds the model.
- Vision placeholders: a sampled image or video placeholder token would break the image count of the
  training forward pass (TRL then drops the images of the batch silently), so a turn is cut before
  the first one and ends with ``length`` (a prefix of a sample is a sample); the generators also
  suppress them.
- The end: :meth:`PolicyBackend.finish` appends the end-of-turn token (``env_mask`` 0) after a last
  turn that stopped on a closing tag, so the sequence ends like a chat turn.

Limits: each turn samples at most ``min(request.max_tokens, remaining)`` tokens, where remaining is
``max_total_tokens`` minus the completion so far (model and environment tokens: the paper's budget
for the conversation after the first prompt). When an environment turn would leave no room, it is
not appended and the turn ends at once with ``length``: the sequence never exceeds the budget and
never holds a partial image.

The text the loop sees is the decoded sample, cut just after the first stop string (the convention
of the serving backends); a sampled token that runs past the stop string stays in the ids.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

from PIL import Image

from mmsr_serve.agent.events import AgentResult
from mmsr_serve.agent.protocol import cut_after_stop
from mmsr_serve.backends.base import Completion, Delta, GenerateRequest, ImagePart, Message, ModelBackend
from mmsr_serve.errors import MMSRError

TokenFinish = Literal["stop", "length"]


class TemplateError(MMSRError):
    """The chat template does not extend earlier renders, so environment tokens cannot be derived."""


@dataclass(frozen=True)
class TokenRequest:
    token_ids: list[int]
    images: list[Image.Image]
    """Every image of the sequence, in token order."""
    max_new_tokens: int
    stop: tuple[str, ...] = ()
    temperature: float | None = None
    top_p: float | None = None
    seed: int | None = None


@dataclass(frozen=True)
class TokenOutput:
    token_ids: list[int]
    finish_reason: TokenFinish
    logprobs: list[float] | None = None
    """The sampling log-probability of each sampled token, when the generator reports it."""


@runtime_checkable
class TokenGenerator(Protocol):
    """Samples one model turn from a token sequence."""

    async def generate(self, request: TokenRequest) -> TokenOutput: ...


@dataclass
class TokenTrace:
    """One trajectory as the trainer needs it."""

    prompt_ids: list[int] = field(default_factory=list)
    completion_ids: list[int] = field(default_factory=list)
    env_mask: list[int] = field(default_factory=list)
    """1 for every sampled token, 0 for every token the environment inserted."""
    logprobs: list[float] | None = field(default_factory=list)
    """Per completion token (0.0 for environment tokens); None once a generator reported none."""
    images: list[Image.Image] = field(default_factory=list)
    """Every image of the sequence in token order: the user's, then the search thumbnails."""
    sampled: list[list[int]] = field(default_factory=list)
    """The ids of each model turn as the generator returned them."""

    @property
    def token_ids(self) -> list[int]:
        return self.prompt_ids + self.completion_ids

    def add(self, ids: Sequence[int], *, sampled: bool, logprobs: Sequence[float] | None = None) -> None:
        self.completion_ids += ids
        self.env_mask += [int(sampled)] * len(ids)
        if self.logprobs is not None:
            if sampled and logprobs is None:
                self.logprobs = None
            else:
                self.logprobs += list(logprobs) if sampled and logprobs is not None else [0.0] * len(ids)
        if sampled:
            self.sampled.append(list(ids))


def chat_conversation(messages: Sequence[Message]) -> list[dict[str, Any]]:
    """Messages as the chat template expects them: image parts become ``{"type": "image"}``."""
    return [
        {
            "role": m.role,
            "content": [
                {"type": "image"} if isinstance(p, ImagePart) else {"type": "text", "text": p.text}
                for p in m.content
            ],
        }
        for m in messages
    ]


class PolicyBackend(ModelBackend):
    """One trajectory's model, kept as token ids (see the module docstring)."""

    keeps_stop_strings = True  # sampled ids are the truth: never add a tag the model did not write

    def __init__(
        self, generator: TokenGenerator, processor: Any, *, max_total_tokens: int, model: str = "policy"
    ) -> None:
        self.generator = generator
        self.processor = processor
        self.tokenizer = processor.tokenizer
        self.max_total_tokens = max_total_tokens
        self.model = model
        self.trace = TokenTrace()
        self._eos_id: int = self.tokenizer.eos_token_id
        self._placeholders = placeholder_ids(processor)
        self._rendered: str | None = None  # the render up to and including the last generation prompt
        self._seen = 0  # messages of the conversation already in the trace
        self._turns = 0  # model turns generated so far

    async def stream(self, request: GenerateRequest) -> AsyncIterator[Delta | Completion]:
        messages = list(request.messages)
        if self._rendered is None:
            self._rendered = self._render(messages)
            self.trace.images = _images(messages)
            self.trace.prompt_ids = self._encode(self._rendered, self.trace.images)
        elif not self._add_environment(messages):
            yield Completion("", "length", prompt_tokens=len(self.trace.token_ids), completion_tokens=0)
            return
        self._seen = len(messages)
        context = len(self.trace.token_ids)
        room = self.max_total_tokens - len(self.trace.completion_ids)
        out = await self.generator.generate(
            TokenRequest(
                self.trace.token_ids,
                list(self.trace.images),
                max_new_tokens=max(1, min(request.max_tokens, room)),
                stop=request.stop,
                temperature=request.temperature,
                top_p=request.top_p,
                # each turn its own draw: the trajectory's seed with the turn's place
                seed=None if request.seed is None else trajectory_seed(request.seed, self._turns),
            )
        )
        self._turns += 1
        ids, logprobs, finish = out.token_ids, out.logprobs, out.finish_reason
        cut = next((i for i, t in enumerate(ids) if t in self._placeholders), None)
        if cut is not None:  # a vision placeholder would break the image count of the forward pass
            ids, logprobs, finish = ids[:cut], None if logprobs is None else logprobs[:cut], "length"
        self.trace.add(ids, sampled=True, logprobs=logprobs)
        text, stopped = cut_after_stop(self.tokenizer.decode(ids, skip_special_tokens=True), request.stop)
        finish = "stop" if stopped else finish
        if text:
            yield Delta(text)
        yield Completion(text, finish, prompt_tokens=context, completion_tokens=len(ids))

    def _add_environment(self, messages: list[Message]) -> bool:
        """Append the tokens the environment added since the last turn; False when they do not fit."""
        assert self._rendered is not None
        if len(messages) <= self._seen or messages[self._seen].role != "assistant":
            raise TemplateError("the conversation did not continue with the model's last turn")
        before = self._rendered + messages[self._seen].text
        after = self._render(messages)
        if not after.startswith(before):
            raise TemplateError(
                "the chat template's render of the conversation does not extend its previous render; "
                "environment tokens cannot be derived from it (does the template rewrite earlier turns?)"
            )
        images = _images(messages[self._seen + 1 :])
        ids = self._encode(after[len(before) :], images)
        last = self.trace.sampled[-1] if self.trace.sampled else []
        if last and last[-1] == self._eos_id and ids[:1] == [self._eos_id]:
            ids = ids[1:]  # the model already closed its turn
        if len(self.trace.completion_ids) + len(ids) >= self.max_total_tokens:
            return False
        self.trace.add(ids, sampled=False)
        self.trace.images += images
        self._rendered = after
        return True

    def finish(self, result: AgentResult) -> TokenTrace:
        """Close the trajectory: the end-of-turn token after a last turn that stopped on a closing tag."""
        last = self.trace.sampled[-1] if self.trace.sampled else []
        ended_on_stop = bool(result.turns) and result.turns[-1].finish_reason == "stop"
        if last and ended_on_stop and last[-1] != self._eos_id:
            self.trace.add([self._eos_id], sampled=False)
        return self.trace

    def _render(self, messages: Sequence[Message]) -> str:
        text: str = self.processor.apply_chat_template(
            chat_conversation(messages), add_generation_prompt=True, tokenize=False
        )
        return text

    def _encode(self, text: str, images: list[Image.Image]) -> list[int]:
        inputs = self.processor(text=[text], images=images or None, add_special_tokens=False)
        ids: list[int] = list(inputs["input_ids"][0])
        return [int(i) for i in ids]


def placeholder_ids(processor: Any) -> frozenset[int]:
    """The image and video placeholder ids: tokens a model must not sample."""
    ids = (getattr(processor, "image_token_id", None), getattr(processor, "video_token_id", None))
    return frozenset(i for i in ids if isinstance(i, int))


def _images(messages: Sequence[Message]) -> list[Image.Image]:
    return [image for message in messages for image in message.images]


def trajectory_seed(*parts: int) -> int:
    """A 31-bit seed from integers (run seed, step, process, index...): a hash, so that nearby
    inputs do not give nearby seeds."""
    digest = hashlib.blake2b(repr(parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % (2**31 - 1)
