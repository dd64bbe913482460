"""LLM-as-judge accuracy for evaluation, with any OpenAI-compatible chat model.

The paper reports accuracy judged by an LLM (exact match is too strict for free-form answers).
:class:`LLMJudge` asks the model whether a prediction means the same as the ground truth (or one of
the candidate answers) for the question, and reads a one-word verdict. Training uses the exact-match
reward (:mod:`mmsr_train.reward`); the judge is for evaluation (``mmsr eval --judge-model``)::

    judge = LLMJudge(model="Qwen/Qwen3-32B", base_url="http://localhost:8000/v1")
    ok = await judge.is_correct("Who designed it?", "Amalia Korsgaard", ["A. Korsgaard"])
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from mmsr_bench.answers import is_correct as exact_match
from mmsr_serve.errors import BackendError

JUDGE_PROMPT = """You grade answers to questions. Decide whether the prediction gives the same answer as \
one of the reference answers. Ignore differences of wording, case, punctuation, articles and level of \
detail, as long as the prediction names the same thing. A prediction that hedges between several \
answers, or says it cannot answer, is wrong.

Question: {question}
Reference answers: {answers}
Prediction: {prediction}

Reply with one word: CORRECT or WRONG."""


class LLMJudge:
    """Judge predictions with an OpenAI-compatible chat model (temperature 0, one short reply)."""

    def __init__(
        self,
        model: str,
        base_url: str | None = None,
        api_key: str | None = None,
        *,
        client: Any = None,
        timeout_s: float = 60.0,
    ) -> None:
        from openai import AsyncOpenAI

        self.model = model
        self.client = client or AsyncOpenAI(base_url=base_url, api_key=api_key or "none", timeout=timeout_s)

    async def is_correct(self, question: str, prediction: str | None, answers: Sequence[str]) -> bool:
        """An exact match is correct without asking; a missing prediction is wrong."""
        if prediction is None or not prediction.strip():
            return False
        if exact_match(prediction, answers):
            return True
        prompt = JUDGE_PROMPT.format(question=question, answers=" | ".join(answers), prediction=prediction)
        try:
            reply = await self.client.chat.completions.create(
                model=self.model,
                messages=[{"role": "user", "content": prompt}],
                temperature=0,
                max_tokens=8,
            )
        except Exception as exc:  # the client raises many transport and API error types
            raise BackendError(f"the judge model did not answer: {exc}") from exc
        verdict = (reply.choices[0].message.content or "").strip().upper()
        if verdict.startswith("CORRECT"):
            return True
        if verdict.startswith("WRONG"):
            return False
        raise BackendError(f"the judge replied {verdict[:40]!r}, expected CORRECT or WRONG")
