"""The Prometheus exposition after some traffic."""

from __future__ import annotations

from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from mmsr_serve.backends import ScriptedBackend
from mmsr_serve.errors import BackendError
from mmsr_serve.search.local import LocalIndex
from tests.api.conftest import IMAGE_SEARCH, AppClient, R, user_with_image


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


async def test_metrics_count_requests_turns_searches_and_errors(
    app_client: AppClient, local_index: LocalIndex, doc: dict[str, Any], doc_image_url: str
) -> None:
    backend = ScriptedBackend([IMAGE_SEARCH, f"{R}<answer>x</answer>", BackendError("down")])
    client = app_client(backend, local_index)
    ok = await client.post("/v1/chat/completions", json={"messages": [user_with_image("Q?", doc_image_url)]})
    assert ok.status_code == 200
    failed = await client.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": "Q?"}]})
    assert failed.status_code == 502
    response = await client.get("/metrics")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    m = samples(response.text)
    assert m["mmsr_requests_total", (("path", "/v1/chat/completions"), ("status", "200"))] == 1
    assert m["mmsr_requests_total", (("path", "/v1/chat/completions"), ("status", "502"))] == 1
    assert m["mmsr_model_turn_duration_seconds_count", ()] == 2
    assert m["mmsr_search_calls_total", (("kind", "image"), ("outcome", "ok"), ("provider", "local"))] == 1
    assert m["mmsr_search_duration_seconds_count", (("kind", "image"), ("provider", "local"))] == 1
    assert m["mmsr_errors_total", (("type", "BackendError"),)] == 1
    assert m["mmsr_finish_reasons_total", (("finish_reason", "stop"),)] == 1
    assert m["mmsr_tokens_total", (("kind", "completion"),)] > 0
    assert m["mmsr_requests_in_flight", ()] == 0
    assert m["mmsr_request_duration_seconds_count", (("path", "/v1/chat/completions"),)] == 2


async def test_each_app_has_its_own_registry(app_client: AppClient) -> None:
    first, second = app_client(ScriptedBackend([f"{R}<answer>x</answer>"])), app_client(ScriptedBackend())
    await first.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": "Q?"}]})
    text = (await second.get("/metrics")).text
    assert 'path="/v1/chat/completions"' not in text
