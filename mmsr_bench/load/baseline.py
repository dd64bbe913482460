"""The baseline: the search loop written client-side, as a user would write it without mmsr.

:class:`ClientSideLoop` talks to the model server directly with openai-python and runs the same
search tools (built from the same :class:`~mmsr_serve.config.AgentConfig`), the same prompt pack
and the same limits as ``mmsr serve``: a turn is generated with the protocol's stop strings,
parsed, and a search's results go back as the next user turn. Each message is converted to the
wire form once, when it is added (images as PNG data URLs, the user's bounded to
``max_image_pixels`` as the server bounds it), off the event loop, and the growing message
list is sent at every turn. So ``mmsr bench`` compares the gateway against the loop it saves
its users from writing, on one workload.

What it leaves out, as a hand-written loop would: format corrections (a malformed turn ends the
run, ``invalid``), the RAG workflow (``always``) and plain chat (``off``) modes, the token budget
across turns, retries. It records what the server's trace gives (turns, searches with latency,
cache status and provider, tokens), so both sides fill the same
:class:`~mmsr_bench.load.records.RequestRecord`.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from mmsr_bench.load.records import RequestRecord, SearchCall
from mmsr_bench.load.workload import RequestFactory
from mmsr_serve.agent import render
from mmsr_serve.agent.events import SearchKind
from mmsr_serve.agent.limits import Limits
from mmsr_serve.agent.loop import Tools, run_search
from mmsr_serve.agent.parser import parse_turn, restore_stop
from mmsr_serve.agent.prompts import PromptPack
from mmsr_serve.agent.protocol import STOP_STRINGS
from mmsr_serve.backends.base import ImagePart, Message
from mmsr_serve.images import InputImage, load_image, to_data_url
from mmsr_serve.search.costs import track_costs
from mmsr_serve.search.factory import SearchTools

__all__ = ["ClientSideLoop"]

_KINDS: dict[str, SearchKind] = {"image_search": "image", "text_search": "text"}


class ClientSideLoop:
    """Run a workload item through the protocol against an OpenAI-compatible model server."""

    def __init__(
        self,
        client: Any,
        *,
        model: str,
        factory: RequestFactory,
        tools: SearchTools,
        pack: PromptPack,
        limits: Limits,
        stream: bool = False,
        temperature: float | None = None,
    ) -> None:
        self.client = client
        """An ``openai.AsyncOpenAI`` pointed at the model server."""
        self.model, self.factory, self.tools, self.pack, self.limits = model, factory, tools, pack, limits
        self.stream, self.temperature = stream, temperature

    async def run(self, index: int, record: RequestRecord) -> RequestRecord:
        """One item, end to end, into ``record``; failures are recorded, never raised."""
        import openai

        started = time.perf_counter()
        try:
            with track_costs() as ledger:
                await self._run(index, record, started)
            record.status, record.cost_usd = 200, ledger.total_usd
        except openai.APIStatusError as exc:
            record.status, record.error = exc.status_code, f"{exc.status_code}: {exc.message}"
        except Exception as exc:  # a connection error, a bad image: a failed request, recorded
            record.error = f"{type(exc).__name__}: {exc}"
        record.latency_s = time.perf_counter() - started
        return record

    async def _image(self, index: int) -> InputImage | None:
        """The item's image decoded and bounded as the server does it, for every request anew."""
        url = self.factory.image_url(index)
        return None if url is None else await load_image(url, max_pixels=self.limits.max_image_pixels)

    async def _run(self, index: int, record: RequestRecord, started: float) -> None:
        item = self.factory.items[index]
        image = await self._image(index)
        wire: list[dict[str, Any]] = []
        if self.pack.system:
            wire.append({"role": "system", "content": self.pack.system})
        first = render.first_turn(self.pack, item.question, image, self.limits)
        # the image as the server sends it: bounded to max_image_pixels, encoded as PNG
        wire.append(await asyncio.to_thread(_wire, first))
        done = {"image": 0, "text": 0}
        record.finish_reason = "max_turns"
        for turn in range(1, self.limits.max_turns + 1):
            text, finish = await self._turn(wire, record, started)
            record.turns = turn
            wire.append({"role": "assistant", "content": text})
            parsed = parse_turn(text)
            if parsed.action == "answer":
                record.finish_reason, record.answer = "stop", parsed.answer
                if self.stream and record.ttfa_s is None:
                    record.ttfa_s = time.perf_counter() - started
                return
            if finish == "length":
                record.finish_reason = "length"
                return
            kind = _KINDS.get(parsed.action)
            allowed = {"image": self.limits.max_image_searches, "text": self.limits.max_text_searches}
            tool = {"image": self.tools.image, "text": self.tools.text}.get(kind or "")
            if (
                kind is None
                or tool is None
                or done[kind] >= allowed[kind]
                or (kind == "image" and image is None)
            ):
                record.finish_reason = "invalid"
                return
            if turn == self.limits.max_turns:
                return
            tools = Tools(self.tools.image, self.tools.text)
            search = await run_search(kind, parsed.query, turn, image, tools, self.limits)
            done[kind] += 1
            record.searches.append(
                SearchCall(kind, search.latency_s, search.provider, search.cached, search.error)
            )
            results = render.results_turn(self.pack, search, item.question)
            wire.append(await asyncio.to_thread(_wire, results))

    async def _turn(
        self, wire: list[dict[str, Any]], record: RequestRecord, started: float
    ) -> tuple[str, str]:
        request: dict[str, Any] = {
            "model": self.model,
            "messages": wire,
            "stop": list(STOP_STRINGS),
            "max_tokens": self.limits.max_new_tokens,
        }
        if self.temperature is not None:
            request["temperature"] = self.temperature
        if not self.stream:
            response = await self.client.chat.completions.create(**request)
            choice = response.choices[0]
            text, finish = choice.message.content or "", choice.finish_reason or "stop"
            usage = response.usage
        else:
            pieces: list[str] = []
            finish, usage = "stop", None
            stream = await self.client.chat.completions.create(
                **request, stream=True, stream_options={"include_usage": True}
            )
            async for chunk in stream:
                if chunk.usage is not None:
                    usage = chunk.usage
                for choice in chunk.choices:
                    if choice.delta.content:
                        if record.ttft_s is None:
                            record.ttft_s = time.perf_counter() - started
                        pieces.append(choice.delta.content)
                    if choice.finish_reason:
                        finish = choice.finish_reason
            text = "".join(pieces)
        if usage is not None:
            record.prompt_tokens += usage.prompt_tokens
            record.completion_tokens += usage.completion_tokens
        return restore_stop(text, finish), finish


def _wire(message: Message) -> dict[str, Any]:
    """A message in the OpenAI wire form, built once (images encoded as PNG here)."""
    content: list[dict[str, Any]] = []
    for part in message.content:
        if isinstance(part, ImagePart):
            content.append({"type": "image_url", "image_url": {"url": to_data_url(part.image)}})
        elif part.text:
            content.append({"type": "text", "text": part.text})
    return {"role": message.role, "content": content}
