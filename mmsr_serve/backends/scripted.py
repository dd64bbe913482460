"""ScriptedBackend: the test double shipped with the package.

It replays queued turns in order and records every request it received, so tests (ours and
yours) can assert on what the agent sent to the model::

    backend = ScriptedBackend(["<reason>...</reason><search><img></search>"])
    backend.enqueue("<reason>...</reason><answer>Paris</answer>")
    ...
    backend.requests[1].messages[-1]   # the user turn carrying the image search results

Like a real server it honours stop strings (the text is cut just after the first one, which is
kept) and ``max_tokens`` (counted in whitespace-separated words; truncation gives ``length``).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator, Iterable

from mmsr_serve.backends.base import Completion, Delta, FinishReason, GenerateRequest, ModelBackend
from mmsr_serve.errors import BackendError


class ScriptedBackend(ModelBackend):
    def __init__(self, turns: Iterable[str | BaseException] = (), *, model: str = "scripted") -> None:
        self.model = model
        self._queue: deque[str | BaseException] = deque(turns)
        self.requests: list[GenerateRequest] = []

    def enqueue(self, *turns: str | BaseException) -> None:
        """Queue model turns (or exceptions to raise in their place)."""
        self._queue.extend(turns)

    @property
    def remaining(self) -> int:
        return len(self._queue)

    async def stream(self, request: GenerateRequest) -> AsyncIterator[Delta | Completion]:
        self.requests.append(request)
        if not self._queue:
            raise BackendError("ScriptedBackend: no scripted turn left for this request")
        turn = self._queue.popleft()
        if isinstance(turn, BaseException):
            raise turn
        text, finish = _apply_limits(turn, request)
        words = text.split(" ")
        for i, word in enumerate(words):
            await asyncio.sleep(0)
            yield Delta(word if i == len(words) - 1 else word + " ")
        prompt_tokens = sum(len(m.text.split()) + 64 * len(m.images) for m in request.messages)
        yield Completion(text, finish, prompt_tokens=prompt_tokens, completion_tokens=len(text.split()))


def _apply_limits(text: str, request: GenerateRequest) -> tuple[str, FinishReason]:
    cuts = [text.find(s) + len(s) for s in request.stop if s in text]
    if cuts:
        text = text[: min(cuts)]
    words = text.split(" ")
    if len([w for w in words if w]) > request.max_tokens:
        kept: list[str] = []
        count = 0
        for word in words:
            count += bool(word)
            if count > request.max_tokens:
                break
            kept.append(word)
        return " ".join(kept), "length"
    return text, "stop"
