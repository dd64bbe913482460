"""Where a question is run: in-process through :class:`SearchAgent`, or against a running server.

Both runners take one question and a search mode and return a :class:`RunResult`: the answer
(None unless the run ended with ``stop``), how the run ended, the searches it made and the model
turns it took. Decoding is greedy (temperature 0) unless a temperature is given, so evaluations
are reproducible.

In ``off`` mode the model's whole reply is its answer; a reply that ends with the protocol's
``<answer>...</answer>`` (a protocol-trained model often answers that way without the protocol
prompt) is reduced to what the tags hold, as the reward does.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from mmsr_bench.world.questions import Question
from mmsr_serve.agent import SearchAgent, parse_turn
from mmsr_serve.agent.loop import Sampling
from mmsr_serve.agent.protocol import SearchMode
from mmsr_serve.images import file_data_url


@dataclass(frozen=True)
class RunResult:
    answer: str | None
    finish_reason: str
    image_searches: int
    text_searches: int
    turns: int


class Runner(Protocol):
    label: str
    """The model's name in tables and plots."""

    async def run(self, question: Question, mode: SearchMode) -> RunResult: ...

    async def aclose(self) -> None: ...


def final_answer(answer: str | None) -> str | None:
    """``answer`` with a trailing ``<answer>...</answer>`` reduced to its content."""
    if answer is None:
        return None
    parsed = parse_turn(answer)
    return parsed.answer if parsed.action == "answer" else answer


class AgentRunner:
    """Run questions through an in-process :class:`SearchAgent` (its backend, tools and limits)."""

    def __init__(self, agent: SearchAgent, label: str, *, temperature: float = 0.0) -> None:
        self.agent = agent
        self.label = label
        self.sampling = Sampling(temperature=temperature)

    async def run(self, question: Question, mode: SearchMode) -> RunResult:
        result = await self.agent.run(question.question, question.image, mode=mode, sampling=self.sampling)
        calls = result.search_calls
        return RunResult(
            answer=final_answer(result.answer) if result.finish_reason == "stop" else None,
            finish_reason=result.finish_reason,
            image_searches=calls["image"],
            text_searches=calls["text"],
            turns=len(result.turns),
        )

    async def aclose(self) -> None:
        await self.agent.backend.aclose()


class ServerRunner:
    """Ask a running ``mmsr serve`` through the OpenAI client (``search_mode`` and ``return_trace``
    are sent as extras; the turns are counted from the trace)."""

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        api_key: str | None = None,
        temperature: float = 0.0,
        max_new_tokens: int | None = None,
        timeout_s: float = 600.0,
        http_client: Any = None,
    ) -> None:
        from openai import AsyncOpenAI

        self.client = AsyncOpenAI(
            base_url=base_url,
            api_key=api_key or "EMPTY",
            timeout=timeout_s,
            max_retries=2,
            http_client=http_client,
        )
        self.model = model
        self.label = model
        self.temperature = temperature
        self.max_new_tokens = max_new_tokens

    async def run(self, question: Question, mode: SearchMode) -> RunResult:
        content: list[dict[str, Any]] = [{"type": "text", "text": question.question}]
        if question.image:  # a file, or a data URL already (a parquet question set's image)
            url = question.image if question.image.startswith("data:") else file_data_url(question.image)
            content.append({"type": "image_url", "image_url": {"url": url}})
        completion = await self.client.chat.completions.create(
            model=self.model,
            messages=[{"role": "user", "content": content}],  # type: ignore[list-item,misc]
            temperature=self.temperature,
            max_tokens=self.max_new_tokens,  # per model turn; null: the server's
            extra_body={"search_mode": mode, "return_trace": True},
        )
        choice = completion.choices[0]
        extra = completion.model_extra or {}
        usage_extra = (completion.usage.model_extra if completion.usage else None) or {}
        calls = usage_extra.get("search_calls") or {}
        steps = (extra.get("trace") or {}).get("steps") or []
        turns = sum(1 for step in steps if step.get("type") == "turn")
        return RunResult(
            answer=final_answer(choice.message.content) if choice.finish_reason == "stop" else None,
            finish_reason=str(choice.finish_reason),
            image_searches=int(calls.get("image", 0)),
            text_searches=int(calls.get("text", 0)),
            turns=turns or 1,
        )

    async def aclose(self) -> None:
        await self.client.close()
