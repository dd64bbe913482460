"""Prometheus metrics, one registry per app (so several apps in one process, as in tests, do not clash).

mmsr_requests_total{path, status}                 HTTP requests answered
mmsr_request_duration_seconds{path}               end-to-end latency (streams: to their last byte)
mmsr_requests_in_flight                           chat completions running now
mmsr_model_turn_duration_seconds                  one model turn (one backend generation)
mmsr_tokens_total{kind}                           prompt / completion tokens over all model turns
mmsr_search_duration_seconds{kind, provider}      one search
mmsr_search_calls_total{kind, provider, outcome}  searches run (outcome: ok, error)
mmsr_search_cache_hits_total{kind, provider}      searches answered from the cache
mmsr_search_provider_calls_total{provider, outcome}  calls to web providers, readers, summarizers
                                                  (each HTTP attempt; outcome: ok, timeout, ...)
mmsr_search_provider_tokens_total{provider}       tokens billed by the provider (reader, summarizer)
mmsr_search_cost_usd_total{provider}              estimated cost, from the configured price table
mmsr_finish_reasons_total{finish_reason}          how runs ended
mmsr_errors_total{type}                           errors by exception type

With several worker processes (``mmsr serve --workers N``) every worker writes its values to the
directory named by ``PROMETHEUS_MULTIPROC_DIR`` (prometheus_client's multiprocess mode, set by
the server before the workers start) and ``/metrics``, whichever worker answers it, sums them all;
``mmsr_requests_in_flight`` is the sum over the live workers.
"""

from __future__ import annotations

import os
import time

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest, multiprocess
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mmsr_serve.agent.events import Event, Finished, SearchFinished, TurnFinished
from mmsr_serve.api.access import ERROR_BODY_BYTES, Access, LogFormat, attach, log_access, request_id
from mmsr_serve.search.costs import ProviderCall

CONTENT_TYPE = CONTENT_TYPE_LATEST
# Puts prometheus_client in multiprocess mode; read when it is first imported (api/workers.py).
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
_LATENCY = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 40, 80, 160)
_ROUTES = ("/v1/chat/completions", "/v1/responses", "/v1/models", "/health", "/ready", "/metrics")


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("mmsr_requests", "HTTP requests answered.", ["path", "status"], registry=r)
        self.latency = Histogram(
            "mmsr_request_duration_seconds", "End-to-end latency.", ["path"], buckets=_LATENCY, registry=r
        )
        self.in_flight = Gauge(
            "mmsr_requests_in_flight",
            "Chat completions running now.",
            multiprocess_mode="livesum",
            registry=r,
        )
        self.turn_latency = Histogram(
            "mmsr_model_turn_duration_seconds", "Latency of one model turn.", buckets=_LATENCY, registry=r
        )
        self.tokens = Counter("mmsr_tokens", "Tokens over all model turns.", ["kind"], registry=r)
        self.search_latency = Histogram(
            "mmsr_search_duration_seconds",
            "Latency of one search.",
            ["kind", "provider"],
            buckets=_LATENCY,
            registry=r,
        )
        self.search_calls = Counter(
            "mmsr_search_calls", "Searches run.", ["kind", "provider", "outcome"], registry=r
        )
        self.cache_hits = Counter(
            "mmsr_search_cache_hits", "Searches answered from the cache.", ["kind", "provider"], registry=r
        )
        self.provider_calls = Counter(
            "mmsr_search_provider_calls",
            "Calls to web search providers.",
            ["provider", "outcome"],
            registry=r,
        )
        self.provider_tokens = Counter(
            "mmsr_search_provider_tokens", "Tokens billed by providers.", ["provider"], registry=r
        )
        self.provider_cost = Counter(
            "mmsr_search_cost_usd", "Estimated cost of provider calls (USD).", ["provider"], registry=r
        )
        self.finish_reasons = Counter("mmsr_finish_reasons", "How runs ended.", ["finish_reason"], registry=r)
        self.errors = Counter("mmsr_errors", "Errors by exception type.", ["type"], registry=r)

    def observe(self, event: Event) -> None:
        """Account for one agent event (called for every event of every run)."""
        if isinstance(event, TurnFinished):
            record = event.record
            self.turn_latency.observe(record.latency_s)
            self.tokens.labels("prompt").inc(record.usage.prompt_tokens)
            self.tokens.labels("completion").inc(record.usage.completion_tokens)
        elif isinstance(event, SearchFinished):
            s = event.record
            provider = s.provider or "none"
            self.search_latency.labels(s.kind, provider).observe(s.latency_s)
            self.search_calls.labels(s.kind, provider, "error" if s.error else "ok").inc()
            if s.cached:
                self.cache_hits.labels(s.kind, provider).inc()
        elif isinstance(event, Finished):
            self.finish_reasons.labels(event.result.finish_reason).inc()

    def observe_provider_call(self, call: ProviderCall) -> None:
        """Account for one call to a web provider (a :class:`~mmsr_serve.search.costs.Meter` listener)."""
        self.provider_calls.labels(call.provider, call.outcome).inc()
        if call.tokens:
            self.provider_tokens.labels(call.provider).inc(call.tokens)
        if call.cost_usd:
            self.provider_cost.labels(call.provider).inc(call.cost_usd)

    def count_error(self, exc: BaseException) -> None:
        self.errors.labels(type(exc).__name__).inc()

    def exposition(self) -> bytes:
        if os.environ.get(MULTIPROC_ENV):  # several workers: every worker's values, summed
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)
            return generate_latest(registry)
        return generate_latest(self.registry)


def worker_exited() -> None:
    """Drop this process's live gauges from the sums (multiprocess mode; called at shutdown)."""
    if os.environ.get(MULTIPROC_ENV):
        multiprocess.mark_process_dead(os.getpid())


class MetricsMiddleware:
    """Counts every HTTP response by path and status, and times it to its last byte; writes
    its access line (:mod:`mmsr_serve.api.access`) and sets its ``x-request-id``."""

    def __init__(self, app: ASGIApp, metrics: Metrics, log_format: LogFormat = "text") -> None:
        self.app = app
        self.metrics = metrics
        self.log_format: LogFormat = log_format

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope["path"] if scope["path"] in _ROUTES else "other"
        started, status = time.perf_counter(), 499
        access = Access(request_id(scope))
        attach(scope, access)
        error_body = b""

        async def counting_send(message: Message) -> None:
            nonlocal status, error_body
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = list(message.get("headers") or ())
                headers.append((b"x-request-id", access.request_id.encode("latin-1")))
                message = {**message, "headers": headers}
            elif status >= 400 and len(error_body) < ERROR_BODY_BYTES:
                error_body += message.get("body", b"")[:ERROR_BODY_BYTES]
            await send(message)

        try:
            await self.app(scope, receive, counting_send)
        finally:
            latency = time.perf_counter() - started
            self.metrics.requests.labels(path, str(status)).inc()
            self.metrics.latency.labels(path).observe(latency)
            if error_body:
                access.error_from_body(error_body)
            log_access(access, scope, status, latency, self.log_format)
