"""The agent loop: generate a turn, parse its action, run the search, repeat until an answer.

One async generator used by the server, the SDK and the trainer alike. Its policy:

- A turn ending in ``<answer>`` finishes the run (``stop``).
- A turn cut by its token limit finishes it (``length``); so does a spent conversation budget.
- A search within its limit runs, and its results (or its failure) become the next user turn.
  Search failures are the tools' fault and go back to the model; they never abort the run.
- A search requested in the last turn ends the run (``max_turns``): no turn is left to use it.
- A malformed turn, or a search over its limit (an image search without an image included),
  gets a corrective user turn from the pack while turns remain (``Limits.recover``, serving);
  without ``recover`` (training, as in the paper), or with a pack that has no
  ``corrective_turns`` (a checkpoint never trained on them), it ends the run (``invalid``).
- Turns stop at the actions' closing tags, or, with a pack's ``stop_at_tags`` off, at the
  model's end-of-turn token; a pack's ``exact_actions`` reads the action as exact tags.
- Errors of the backend or of our own code propagate: they are not the model's doing.

Search modes: ``auto`` is the protocol above (the model decides). ``always`` is the paper's RAG
workflow baseline: the loop runs the image search itself before the first turn (when there is an
image), and an answer given before one web search gets the pack's ``text_search_required`` turn
while turns remain. ``off`` (:func:`plain_chat`) is one plain turn without the protocol.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Literal

from mmsr_serve.agent import render
from mmsr_serve.agent.events import (
    AgentFinishReason,
    AgentResult,
    AnswerDelta,
    Event,
    Finished,
    ReasoningDelta,
    SearchFinished,
    SearchKind,
    SearchRecord,
    SearchStarted,
    TextDelta,
    TurnFinished,
    TurnRecord,
    TurnStarted,
    Usage,
)
from mmsr_serve.agent.limits import Limits
from mmsr_serve.agent.parser import ParsedTurn, parse_turn, restore_stop
from mmsr_serve.agent.prompts import PromptPack
from mmsr_serve.agent.protocol import STOP_STRINGS, LiveReasoning, LiveText, cut_at_stop
from mmsr_serve.backends.base import Completion, Delta, GenerateRequest, Message, ModelBackend
from mmsr_serve.errors import BackendError, SearchError
from mmsr_serve.images import InputImage
from mmsr_serve.search.base import ImageSearchTool, SearchResults, TextSearchTool


@dataclass(frozen=True)
class Tools:
    image: ImageSearchTool | None = None
    text: TextSearchTool | None = None


@dataclass(frozen=True)
class Sampling:
    temperature: float | None = None
    top_p: float | None = None
    seed: int | None = None
    stop: tuple[str, ...] = ()
    """The caller's stop sequences, sent to the backend in the ``off`` mode's plain turn. Protocol
    turns stop on their closing tags instead (the server cuts the final answer at these)."""
    top_k: int | None = None
    min_p: float | None = None
    repetition_penalty: float | None = None


@dataclass(frozen=True)
class _Finish:
    reason: AgentFinishReason
    answer: str | None = None


@dataclass(frozen=True)
class _Search:
    kind: SearchKind
    query: str | None


@dataclass(frozen=True)
class _Correct:
    message: str


def decide(
    parsed: ParsedTurn,
    finish_reason: str,
    allowed: dict[SearchKind, bool],
    turns_left: int,
    limits: Limits,
    pack: PromptPack,
    text_search_required: bool = False,
) -> _Finish | _Search | _Correct:
    """What follows a model turn. Pure; ``allowed`` says which searches are still available."""
    if parsed.action == "answer":
        if text_search_required and allowed["text"] and turns_left:
            return _Correct(pack.render("text_search_required"))
        return _Finish("stop", parsed.answer)
    if finish_reason == "length":
        return _Finish("length")
    recover = limits.recover and pack.corrective_turns
    if parsed.action == "none":
        if recover and turns_left:
            return _Correct(pack.render("format_reminder"))
        return _Finish("max_turns" if recover else "invalid")
    kind: SearchKind = "image" if parsed.action == "image_search" else "text"
    if not allowed[kind]:
        if recover and turns_left:
            return _Correct(pack.render("search_refused", kind="image" if kind == "image" else "web"))
        return _Finish("max_turns" if recover else "invalid")
    if not turns_left:
        return _Finish("max_turns")
    return _Search(kind, parsed.query)


async def agent_loop(
    backend: ModelBackend,
    messages: list[Message],
    *,
    question: str,
    image: InputImage | None,
    tools: Tools,
    limits: Limits,
    pack: PromptPack,
    sampling: Sampling = Sampling(),
    mode: Literal["auto", "always"] = "auto",
) -> AsyncIterator[Event]:
    """Run the conversation that ``messages`` starts (history + the rendered first turn)."""
    turns: list[TurnRecord] = []
    searches: list[SearchRecord] = []
    reasoning = LiveReasoning()
    usage, first_prompt, spent, pending = Usage(), 0, 0, 0
    finish = _Finish("max_turns")
    if mode == "always" and tools.image is not None and image is not None and limits.max_image_searches:
        yield SearchStarted(0, "image", None)
        searches.append(await run_search("image", None, 0, image, tools, limits))
        yield SearchFinished(searches[-1])
        messages.append(await _results_turn(pack, searches[-1], question))
        pending = _estimate_tokens(messages[-1])
    for turn in range(1, limits.max_turns + 1):
        budget = limits.max_total_tokens - spent - pending
        if budget <= 0:
            finish = _Finish("length")
            break
        # generate
        yield TurnStarted(turn)
        request = GenerateRequest(
            messages=list(messages),
            max_tokens=min(limits.max_new_tokens, budget),
            temperature=sampling.temperature,
            top_p=sampling.top_p,
            seed=sampling.seed,
            stop=STOP_STRINGS if pack.stop_at_tags else (),
            top_k=sampling.top_k,
            min_p=sampling.min_p,
            repetition_penalty=sampling.repetition_penalty,
        )
        started, out = time.perf_counter(), list[Completion]()
        reasoning.next_turn()
        async for delta in _stream_turn(backend, request, turn, out, reasoning.feed):
            yield delta
        completion = out[0]
        # parse
        text = completion.text
        if pack.stop_at_tags and not backend.keeps_stop_strings:
            text = restore_stop(text, completion.finish_reason)
        turn_usage = Usage(completion.prompt_tokens or 0, completion.completion_tokens or 0)
        usage += turn_usage
        first_prompt = first_prompt or turn_usage.prompt_tokens
        spent, pending = _spent(completion, first_prompt, spent + pending, text), 0
        record = TurnRecord(
            turn,
            text,
            parse_turn(text, exact=pack.exact_actions),
            completion.finish_reason,
            turn_usage,
            time.perf_counter() - started,
        )
        turns.append(record)
        messages.append(Message.of("assistant", text))
        if piece := reasoning.finish(record.parsed.reasoning):
            yield ReasoningDelta(turn, piece)
        yield TurnFinished(record)
        # act
        done = {k: sum(s.kind == k for s in searches) for k in ("image", "text")}
        allowed: dict[SearchKind, bool] = {
            "image": tools.image is not None
            and image is not None
            and done["image"] < limits.max_image_searches,
            "text": tools.text is not None and done["text"] < limits.max_text_searches,
        }
        no_text_yet = mode == "always" and done["text"] == 0
        step = decide(
            record.parsed,
            completion.finish_reason,
            allowed,
            limits.max_turns - turn,
            limits,
            pack,
            no_text_yet,
        )
        if isinstance(step, _Finish):
            finish = step
            break
        if isinstance(step, _Correct):
            messages.append(Message.of("user", step.message))
        else:
            yield SearchStarted(turn, step.kind, step.query)
            search = await run_search(step.kind, step.query, turn, image, tools, limits)
            searches.append(search)
            yield SearchFinished(search)
            messages.append(await _results_turn(pack, search, question))
        pending = _estimate_tokens(messages[-1])
    if finish.answer and (answer := cut_at_stop(finish.answer, sampling.stop)):
        yield AnswerDelta(answer)
    yield Finished(AgentResult(finish.answer, finish.reason, turns, searches, usage, messages))


async def plain_chat(
    backend: ModelBackend, messages: list[Message], *, limits: Limits, sampling: Sampling = Sampling()
) -> AsyncIterator[Event]:
    """The ``off`` search mode: one model turn on the messages as given, no protocol; it stops
    on the caller's stop sequences only (``sampling.stop``).

    The whole reply is the answer, without the stop sequence it ended on (backends that keep it
    in the text, such as transformers, included); the finish reason is the backend's.
    """
    yield TurnStarted(1)
    request = GenerateRequest(
        messages=list(messages),
        max_tokens=limits.max_new_tokens,
        temperature=sampling.temperature,
        top_p=sampling.top_p,
        seed=sampling.seed,
        stop=sampling.stop,
        top_k=sampling.top_k,
        min_p=sampling.min_p,
        repetition_penalty=sampling.repetition_penalty,
    )
    started, out = time.perf_counter(), list[Completion]()
    live = LiveText(sampling.stop)
    async for delta in _stream_turn(backend, request, 1, out, live.feed, answer=True):
        yield delta
    completion = out[0]
    usage = Usage(completion.prompt_tokens or 0, completion.completion_tokens or 0)
    answer = completion.text
    if completion.finish_reason == "stop":
        ended = next((s for s in sampling.stop if s and answer.endswith(s)), "")
        answer = answer[: len(answer) - len(ended)]
    parsed = ParsedTurn("answer", "", answer=answer.strip())
    record = TurnRecord(
        1, completion.text, parsed, completion.finish_reason, usage, time.perf_counter() - started
    )
    yield TurnFinished(record)
    messages.append(Message.of("assistant", completion.text))
    if rest := live.finish(cut_at_stop(parsed.answer or "", sampling.stop)):
        yield AnswerDelta(rest)
    yield Finished(AgentResult(parsed.answer, completion.finish_reason, [record], [], usage, messages))


async def _stream_turn(
    backend: ModelBackend,
    request: GenerateRequest,
    turn: int,
    out: list[Completion],
    read: Callable[[str], str],
    *,
    answer: bool = False,
) -> AsyncIterator[TextDelta]:
    """Stream one model turn as deltas, each with the piece ``read`` made certain (reasoning, or
    with ``answer`` the reply); its Completion is appended to ``out``."""
    async for item in backend.stream(request):
        if isinstance(item, Delta):
            piece = read(item.text)
            yield TextDelta(turn, item.text, answer=piece) if answer else TextDelta(turn, item.text, piece)
        else:
            out.append(item)
    if not out:
        raise BackendError(f"{type(backend).__name__} ended a turn without a completion")


async def _results_turn(pack: PromptPack, record: SearchRecord, question: str) -> Message:
    """The results turn; image results decode their thumbnails (milliseconds each) in a thread,
    off the event loop that streams every other request."""
    if record.kind == "image" and record.hits:
        return await asyncio.to_thread(render.results_turn, pack, record, question)
    return render.results_turn(pack, record, question)


def _spent(completion: Completion, first_prompt: int, spent: int, text: str) -> int:
    """Tokens used after the first prompt: exact from the backend's usage when it reports it."""
    if completion.prompt_tokens and completion.completion_tokens is not None:
        return completion.prompt_tokens + completion.completion_tokens - first_prompt
    return spent + (completion.completion_tokens or len(text.split()))


def _estimate_tokens(message: Message) -> int:
    """A rough size of an inserted user turn (4 characters a token, ~100 tokens a thumbnail),
    used only until the next turn's usage reports the exact count."""
    return len(message.text) // 4 + 100 * len(message.images)


async def run_search(
    kind: SearchKind, query: str | None, turn: int, image: InputImage | None, tools: Tools, limits: Limits
) -> SearchRecord:
    """One search with its tool within ``limits.search_timeout_s``; a failure or a timeout is a
    record carrying its error (the model is told), never an exception. The client-side loop of
    ``mmsr bench`` searches through it too."""
    started = time.perf_counter()
    try:
        results: SearchResults
        if kind == "image":
            assert tools.image is not None and image is not None  # guaranteed by `allowed`
            call = tools.image.search_image(image, limits.top_k)
        else:
            assert tools.text is not None and query is not None
            call = tools.text.search_text(query, limits.top_k)
        results = await asyncio.wait_for(call, limits.search_timeout_s)
    except SearchError as exc:
        return SearchRecord(kind, query, [], turn, error=str(exc), latency_s=time.perf_counter() - started)
    except asyncio.TimeoutError:
        error = f"no answer within {limits.search_timeout_s:g} s"
        return SearchRecord(kind, query, [], turn, error=error, latency_s=time.perf_counter() - started)
    return SearchRecord(
        kind,
        query,
        list(results.hits[: limits.top_k]),
        turn,
        results.provider,
        results.cached,
        latency_s=time.perf_counter() - started,
    )
