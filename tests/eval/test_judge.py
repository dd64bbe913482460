"""The LLM judge, against a stand-in OpenAI-compatible server."""

from __future__ import annotations

import json

import httpx
import pytest
from openai import AsyncOpenAI

from mmsr_bench.judge import LLMJudge
from mmsr_serve.errors import BackendError


def judge_replying(verdict: str, seen: list[dict[str, object]]) -> LLMJudge:
    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(json.loads(request.content))
        message = {"role": "assistant", "content": verdict}
        return httpx.Response(
            200,
            json={
                "id": "x",
                "object": "chat.completion",
                "created": 0,
                "model": "judge",
                "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
            },
        )

    client = AsyncOpenAI(
        base_url="http://judge.test/v1",
        api_key="k",
        http_client=httpx.AsyncClient(transport=httpx.MockTransport(handler)),
    )
    return LLMJudge("judge", client=client)


async def test_judge_asks_the_model_unless_exact_match_settles_it() -> None:
    seen: list[dict[str, object]] = []
    judge = judge_replying("CORRECT.", seen)
    assert await judge.is_correct("Who designed it?", "the designer Amalia Korsgaard", ["Amalia Korsgaard"])
    assert seen and seen[0]["temperature"] == 0 and "Amalia Korsgaard" in str(seen[0]["messages"])
    assert await judge.is_correct("Who?", "amalia korsgaard", ["Amalia Korsgaard"])  # exact match: no call
    assert len(seen) == 1
    assert not await judge.is_correct("Who?", None, ["x"]) and len(seen) == 1
    assert not await judge_replying("wrong", []).is_correct("Who?", "Bob", ["Alice"])


async def test_an_unreadable_verdict_is_an_error() -> None:
    with pytest.raises(BackendError, match="expected CORRECT or WRONG"):
        await judge_replying("maybe", []).is_correct("Who?", "Bob", ["Alice"])
