"""SearchAgent: the SDK entry point that embeds the search loop in an application.

agent = SearchAgent(backend, search=LocalIndex("corpus/"))
result = await agent.run("Who designed this?", image="photo.jpg")
print(result.answer, result.search_calls, result.citations)
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

from mmsr_serve.agent import render
from mmsr_serve.agent.events import AgentResult, Event, Finished
from mmsr_serve.agent.limits import Limits
from mmsr_serve.agent.loop import Sampling, Tools, agent_loop, plain_chat
from mmsr_serve.agent.prompts import PromptPack, default_pack
from mmsr_serve.agent.protocol import SearchMode
from mmsr_serve.backends.base import ImagePart, Message, ModelBackend
from mmsr_serve.errors import InvalidInputError
from mmsr_serve.images import Fetch, ImageSource, load_image
from mmsr_serve.search.base import ImageSearchTool, TextSearchTool

HistoryItem = Message | Mapping[str, Any]


class SearchAgent:
    """A model backend plus search tools, limits and a prompt pack.

    ``search`` may provide both tools (like :class:`~mmsr_serve.search.LocalIndex`); ``image_search``
    and ``text_search`` override it per tool. A tool that is missing is simply not offered.
    """

    def __init__(
        self,
        backend: ModelBackend,
        search: ImageSearchTool | TextSearchTool | None = None,
        *,
        image_search: ImageSearchTool | None = None,
        text_search: TextSearchTool | None = None,
        limits: Limits | None = None,
        pack: PromptPack | None = None,
        fetch: Fetch | None = None,
    ) -> None:
        self.backend = backend
        self.tools = Tools(
            image=image_search or (search if isinstance(search, ImageSearchTool) else None),
            text=text_search or (search if isinstance(search, TextSearchTool) else None),
        )
        self.limits = limits or Limits()
        self.pack = pack or default_pack()
        self._fetch = fetch

    async def run(
        self,
        question: str,
        image: ImageSource | None = None,
        history: Sequence[HistoryItem] | None = None,
        *,
        limits: Limits | None = None,
        sampling: Sampling | None = None,
        mode: SearchMode = "auto",
    ) -> AgentResult:
        """Run the search loop to the end and return its result."""
        async for event in self.stream(question, image, history, limits=limits, sampling=sampling, mode=mode):
            if isinstance(event, Finished):
                return event.result
        raise RuntimeError("the agent loop ended without a Finished event")

    async def stream(
        self,
        question: str,
        image: ImageSource | None = None,
        history: Sequence[HistoryItem] | None = None,
        *,
        limits: Limits | None = None,
        sampling: Sampling | None = None,
        mode: SearchMode = "auto",
    ) -> AsyncIterator[Event]:
        """Run the search loop, yielding its events as they happen (the last one is ``Finished``).

        ``mode``: ``auto`` (the model decides), ``always`` (the RAG workflow baseline: image search
        first, then one model-written web search, then the answer), ``off`` (one plain turn on the
        question and image, without the protocol prompt: the no-search baseline).
        """
        if not question.strip():
            raise InvalidInputError("the question is empty", param="question")
        limits = limits or self.limits
        loaded = None
        if image is not None:
            loaded = await load_image(
                image,
                max_pixels=limits.max_image_pixels,
                fetch=self._fetch,
                geometry=self.pack.image_geometry,
            )
        sampling = sampling or Sampling()
        messages = [_history_message(item, i) for i, item in enumerate(history or ())]
        if mode == "off":
            messages.append(Message.of("user", *([ImagePart.of(loaded)] if loaded else []), question))
            async for event in plain_chat(self.backend, messages, limits=limits, sampling=sampling):
                yield event
            return
        if self.pack.system:
            messages.insert(0, Message.of("system", self.pack.system))
        messages.append(render.first_turn(self.pack, question, loaded, limits))
        events = agent_loop(
            self.backend,
            messages,
            question=question,
            image=loaded,
            tools=self.tools,
            limits=limits,
            pack=self.pack,
            sampling=sampling,
            mode=mode,
        )
        async for event in events:
            yield event


def _history_message(item: HistoryItem, index: int) -> Message:
    if isinstance(item, Message):
        return item
    role, content = item.get("role"), item.get("content")
    if role not in ("system", "user", "assistant") or not isinstance(content, str):
        raise InvalidInputError(
            f"history[{index}] must be a Message or {{'role': system|user|assistant, 'content': str}}",
            param=f"history[{index}]",
        )
    return Message.of(role, content)
