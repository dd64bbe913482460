"""Read mmsr's response extensions from openai-python objects (no dependency beyond openai).

openai-python keeps fields it does not know in ``model_extra``; these helpers read them::

    completion = client.chat.completions.create(..., extra_body={"return_trace": True})
    search_calls(completion)   # {"image": 1, "text": 1}
    citations(completion)      # ["https://...", ...]
    reasoning(completion)      # the model's reasoning across its turns
    trace(completion)          # {"search_mode", "limits", "steps": [...]}

    for chunk in stream:
        for event in search_progress(chunk):  # [{"index", "status": "started"|"finished", "kind", ...}]
            ...
        reasoning_delta(chunk)  # a piece of reasoning or ""

    with client.chat.completions.stream(...) as stream:   # openai-python's stream helper
        final = stream.get_final_completion()
    search_events(final)        # every search event of the run, in order
"""

from __future__ import annotations

from typing import Any


def _extra(obj: Any) -> dict[str, Any]:
    return dict(getattr(obj, "model_extra", None) or {})


def search_calls(completion: Any) -> dict[str, int]:
    """Searches run, by kind (summed over choices)."""
    usage = getattr(completion, "usage", None)
    return dict(_extra(usage).get("search_calls") or {"image": 0, "text": 0})


def num_search_queries(completion: Any) -> int:
    return int(_extra(getattr(completion, "usage", None)).get("num_search_queries") or 0)


def citations(completion: Any, choice: int = 0) -> list[str]:
    """URLs of the sources shown to the model (``message.annotations``)."""
    message = completion.choices[choice].message
    return [a.url_citation.url for a in (message.annotations or []) if a.type == "url_citation"]


def search_results(completion: Any) -> list[dict[str, Any]]:
    """Every source shown to the model: ``{"title", "url", "snippet", "kind"}``."""
    return list(_extra(completion).get("search_results") or [])


def reasoning(completion: Any, choice: int = 0) -> str | None:
    extra = _extra(completion.choices[choice].message)
    return extra.get("reasoning_content") or extra.get("reasoning")


def trace(completion: Any) -> dict[str, Any] | None:
    """The run's trace, present when the request set ``return_trace``."""
    return _extra(completion).get("trace")


def search_progress(chunk: Any) -> list[dict[str, Any]]:
    """The search events a streamed chunk carries (``delta.search_events``); [] for other chunks."""
    if not chunk.choices:
        return []
    return list(_extra(chunk.choices[0].delta).get("search_events") or [])


def search_events(completion: Any, choice: int = 0) -> list[dict[str, Any]]:
    """Every search event of a streamed run, from an accumulated completion (``get_final_completion``)."""
    return list(_extra(completion.choices[choice].message).get("search_events") or [])


def reasoning_delta(chunk: Any) -> str:
    if not chunk.choices:
        return ""
    extra = _extra(chunk.choices[0].delta)
    return str(extra.get("reasoning_content") or extra.get("reasoning") or "")
