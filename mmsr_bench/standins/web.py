"""A stand-in web search provider in SearXNG's JSON wire shape, with the pages its results link to.

mmsr's own :class:`~mmsr_serve.search.searxng.SearxngSearch`, given this server's URL as its base
URL, works against it unchanged, and so does the local page reader
(:class:`~mmsr_serve.search.reader.LocalReader`) once the fetcher allows loopback
(``fetch_allow=["127.0.0.1"]``).

- ``GET /search?q=...&format=json`` answers ``{"query", "number_of_results", "results": [{"url",
  "title", "content", "engine", "engines", "positions", "score", "category"}], "answers",
  "corrections", "infoboxes", "suggestions", "unresponsive_engines"}`` with ``results`` hits (any
  other ``format`` is a 403, as on an instance without JSON enabled; no ``q`` is a 400). The hits
  are a function of the query and the seed only.
- ``GET /pages/{id}.html`` serves the page a hit links to: an HTML article (title, a few paragraphs
  naming the query's words) between a menu and a footer. The id carries the query and the rank, so
  the server keeps no state and a cached search result still links to a live page.
- ``GET /health``, ``GET /standin/stats`` (``searches``, ``pages``, ``not_found``, ``in_flight``,
  ``max_in_flight``, loop lag and ``saturated`` as in :mod:`._runtime`), ``POST /standin/reset``.

Searches wait a draw of ``latency``, page reads one of ``page_latency`` (:mod:`.latency` forms),
each from its own seeded ``random.Random``. ``faults`` (:mod:`.faults`) makes some searches fail
as a provider does: 503, 429 with ``Retry-After``, a broken JSON body, a dropped connection, a
slow or a hung answer.

Throughput (measured as for the model stand-in: one core, 32 in flight, latency 0): about 3,200
searches or 3,700 page reads per second.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import html
import random
from dataclasses import dataclass
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from mmsr_bench.standins._runtime import (
    InFlight,
    LoopLag,
    admin_routes,
    error_response,
    json_response,
    lifespan_with,
)
from mmsr_bench.standins.faults import WEB_FAULTS, parse_faults
from mmsr_bench.standins.latency import parse_latency

__all__ = ["WebConfig", "WebStandIn", "page_id", "web_app"]

MAX_QUERY_BYTES = 300
_SUBJECTS = ("history", "design", "makers", "location", "records", "visitors", "materials", "dates")
_MENU = "Home | News | Archive | About us | Contact | Subscribe to our newsletter"


@dataclass(frozen=True)
class WebConfig:
    """How many hits, how long searches and page reads take. Strings are checked here (ValueError)."""

    latency: str = "0"
    """Per search (:mod:`.latency` forms)."""
    page_latency: str = "0"
    """Per page read."""
    results: int = 5
    paragraphs: int = 4
    seed: int = 0
    faults: str = ""
    """Faults drawn per search (:mod:`.faults`); none by default. Page reads are not faulted."""
    hang_s: float = 30.0
    drip_s: float = 0.5

    def __post_init__(self) -> None:
        parse_latency(self.latency)
        parse_latency(self.page_latency)
        parse_faults(self.faults, WEB_FAULTS, hang_s=self.hang_s, drip_s=self.drip_s)
        if self.results < 0 or self.paragraphs < 1:
            raise ValueError("results must be 0 or more and paragraphs 1 or more")


def page_id(query: str, rank: int) -> str:
    """The id of the page at ``rank`` (from 1) for ``query``: the rank and the query, URL-safe."""
    raw = query.encode()[:MAX_QUERY_BYTES]
    return f"{rank}-{base64.urlsafe_b64encode(raw).decode().rstrip('=')}"


def _read_id(ident: str) -> tuple[str, int] | None:
    rank, _, encoded = ident.partition("-")
    if not rank.isdigit():
        return None
    try:
        raw = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4))
        return raw.decode(), int(rank)
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None


def _pick(query: str, rank: int, seed: int) -> int:
    digest = hashlib.blake2b(f"{seed}\x00{rank}\x00{query}".encode(), digest_size=4).digest()
    return int.from_bytes(digest, "big")


def _title(query: str, rank: int, seed: int) -> str:
    subject = _SUBJECTS[_pick(query, rank, seed) % len(_SUBJECTS)]
    return f"{query.strip().title() or 'Untitled'}: {subject} (result {rank})"


def _snippet(query: str, rank: int, seed: int) -> str:
    subject = _SUBJECTS[_pick(query, rank, seed) % len(_SUBJECTS)]
    return f"What is known about {query.strip()}: its {subject}, with sources and pictures."


def _paragraphs(query: str, rank: int, seed: int, count: int) -> list[str]:
    words = query.split() or ["it"]
    start = _pick(query, rank, seed)
    out = []
    for i in range(count):
        subject = _SUBJECTS[(start + i) % len(_SUBJECTS)]
        word = words[(start + i) % len(words)]
        out.append(
            f"This part of the article covers the {subject} of {query.strip()}. Records kept in the"
            f" city archive mention {word} in {1800 + (start + 37 * i) % 220}, and later accounts"
            f" repeat the same details with small changes. Visitors who ask about {word} are told"
            f" the story of its {subject} by the guides, who learned it from the archive."
        )
    return out


class WebStandIn:
    """The web stand-in's state (config, random sources, counters) and its Starlette :attr:`app`."""

    def __init__(self, config: WebConfig | None = None) -> None:
        self.config = config or WebConfig()
        self.latency = parse_latency(self.config.latency)
        self.page_latency = parse_latency(self.config.page_latency)
        self.search_rng = random.Random(f"{self.config.seed}:search")
        self.page_rng = random.Random(f"{self.config.seed}:page")
        c = self.config
        self.faults = parse_faults(c.faults, WEB_FAULTS, hang_s=c.hang_s, drip_s=c.drip_s)
        self.fault_rng = random.Random(f"{self.config.seed}:faults")
        self.counts = {"searches": 0, "pages": 0, "not_found": 0, "errors": 0, "faults": 0}
        self.in_flight = InFlight()
        self.lag = LoopLag()
        self.app = Starlette(
            routes=[
                Route("/search", self._search),
                Route("/pages/{ident}.html", self._page),
                *admin_routes(self.snapshot, self.reset),
            ],
            lifespan=lifespan_with(self.lag),
        )
        self.app.state.standin = self

    def snapshot(self) -> dict[str, Any]:
        """The counters, as ``GET /standin/stats`` returns them."""
        return {
            **self.counts,
            "in_flight": self.in_flight.now,
            "max_in_flight": self.in_flight.most,
            **self.lag.report(),
        }

    def reset(self) -> None:
        """Zero the counters and forget the lag samples."""
        self.counts = dict.fromkeys(self.counts, 0)
        self.in_flight.reset()
        self.lag.samples.clear()

    def results(self, query: str, base_url: str) -> dict[str, Any]:
        """The SearXNG answer to ``query``, its links under ``base_url``."""
        seed = self.config.seed
        hits = [
            {
                "url": f"{base_url}/pages/{page_id(query, rank)}.html",
                "title": _title(query, rank, seed),
                "content": _snippet(query, rank, seed),
                "engine": "standin",
                "engines": ["standin"],
                "positions": [rank],
                "score": round(1.0 / rank, 4),
                "category": "general",
            }
            for rank in range(1, self.config.results + 1)
        ]
        return {
            "query": query,
            "number_of_results": len(hits),
            "results": hits,
            "answers": [],
            "corrections": [],
            "infoboxes": [],
            "suggestions": [],
            "unresponsive_engines": [],
        }

    def page(self, query: str, rank: int) -> str:
        """The HTML of the page at ``rank`` for ``query``."""
        title = html.escape(_title(query, rank, self.config.seed))
        body = "".join(
            f"<p>{html.escape(p)}</p>"
            for p in _paragraphs(query, rank, self.config.seed, self.config.paragraphs)
        )
        return (
            f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{title}</title></head>'
            f"<body><nav>{_MENU}</nav><main><article><h1>{title}</h1>{body}</article></main>"
            "<footer>Copyright the stand-in archive. All rights reserved.</footer></body></html>"
        )

    async def _search(self, request: Request) -> Response:
        self.in_flight.enter()
        try:
            params = request.query_params
            if params.get("format") != "json":
                self.counts["errors"] += 1
                return error_response(403, "this stand-in answers format=json only", "Forbidden")
            query = params.get("q", "").strip()
            if not query:
                self.counts["errors"] += 1
                return error_response(400, "no query (the q parameter)")
            self.counts["searches"] += 1
            await _wait(self.latency.sample(self.search_rng))
            if (fault := self.faults.draw(self.fault_rng)) is not None:
                self.counts["faults"] += 1
                if (answer := await self._fault(fault)) is not None:
                    return answer
            return json_response(self.results(query, str(request.base_url).rstrip("/")))
        finally:
            self.in_flight.leave()

    async def _fault(self, kind: str) -> Response | None:
        """The faulty answer of ``kind`` (:mod:`.faults`); None: answer normally."""
        if kind == "5xx":
            return error_response(503, "stand-in fault: the engines are unavailable", "ServiceUnavailable")
        if kind == "429":
            message = "stand-in fault: too many requests"
            return error_response(429, message, "TooManyRequests", retry_after_s=1)
        if kind == "malformed":
            return Response(b'{"query": "x", "results": [{"url": ', media_type="application/json")
        if kind == "reset":
            return StreamingResponse(_dropped(), media_type="application/json")
        await asyncio.sleep(self.faults.drip_s if kind == "drip" else self.faults.hang_s)
        return None

    async def _page(self, request: Request) -> Response:
        self.in_flight.enter()
        try:
            found = _read_id(request.path_params["ident"])
            if found is None or not 1 <= found[1] <= max(self.config.results, 1):
                self.counts["not_found"] += 1
                return Response("no such page", status_code=404, media_type="text/plain")
            self.counts["pages"] += 1
            await _wait(self.page_latency.sample(self.page_rng))
            return Response(self.page(*found), media_type="text/html; charset=utf-8")
        finally:
            self.in_flight.leave()


async def _wait(seconds: float) -> None:
    if seconds > 0:  # a zero sleep would still cost a trip through the event loop
        await asyncio.sleep(seconds)


async def _dropped() -> Any:
    yield b'{"query": '
    raise ConnectionResetError("stand-in fault: the connection is dropped")


def web_app(config: WebConfig | None = None) -> Starlette:
    """The web stand-in's ASGI app; its :class:`WebStandIn` is ``app.state.standin``."""
    return WebStandIn(config).app
