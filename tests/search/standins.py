"""Stand-ins for the web providers, answering in each one's documented response shape.

One Starlette app plays them all (serve it on loopback with :func:`tests.api.live.serve_in_thread`):

- SerpAPI ``GET /search.json`` (``engine=google``: ``organic_results``; ``engine=google_lens``:
  ``visual_matches``; errors as ``{"error": "..."}``, key in the ``api_key`` parameter);
- Brave ``GET /res/v1/web/search`` (``web.results``; ``X-Subscription-Token``; ``ErrorResponse``);
- Tavily ``POST /search`` (``results``; Bearer key; ``{"detail": {"error": ...}}``);
- SearXNG ``GET /searxng/search?format=json`` (``results``);
- Jina Reader ``POST /jina/`` (``{"code", "status", "data": {"title", "url", "content", "usage"}}``);
- an OpenAI-compatible ``POST /v1/chat/completions`` summarizer (strips nothing: it answers
  ``<think>...</think>Summary of '<title>' for '<query>': <the page's first fact>``);
- web pages ``GET /pages/p{i}.html`` (HTML with boilerplate around an article) and thumbnails
  ``GET /thumbs/{i}.jpg`` (``/thumbs/2.jpg`` is HTML, not an image).

``standin.fail("serpapi", 429, "timeout", 500)`` makes the next calls of a route answer that way
(an HTTP status with the provider's error body, ``"timeout"``: a late answer, ``"garbage"``: a 200
that is not JSON, ``"echo-key"``: a 400 whose message repeats the key). Every request is recorded.
"""

from __future__ import annotations

import asyncio
import io
import re
from collections import defaultdict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from PIL import Image
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

KEYS = {
    "serpapi": "serp-SECRET-key-0123456789",
    "brave": "brave-SECRET-key-0123456789",
    "tavily": "tvly-SECRET-key-0123456789",
    "jina": "jina-SECRET-key-0123456789",
    "llm": "llm-SECRET-key-0123456789",
}
LATE_S = 0.6
FACTS = [
    "The Glass Heron is a bronze sculpture that stands in the harbour of Quillby.",
    "It was made by the sculptor Ines Dubrovka in 1851 for the city's first fair.",
    "The heron is four metres tall and faces the lighthouse across the bay.",
    "Restorers cleaned the statue in 1998 and again in 2015 after a storm.",
    "Local legend says touching its left wing brings a safe return from sea.",
]
BOILERPLATE = "Home | News | About us | Contact | Accept cookies | Subscribe to our newsletter"


@dataclass
class Seen:
    route: str
    method: str
    path: str
    params: dict[str, str]
    headers: dict[str, str]
    body: Any = None


@dataclass
class StandIn:
    base: str = ""
    requests: list[Seen] = field(default_factory=list)
    script: dict[str, deque[Any]] = field(default_factory=lambda: defaultdict(deque))
    on_lens_url: Callable[[str], None] | None = None
    lens_images: list[bytes] = field(default_factory=list)

    def fail(self, route: str, *actions: Any) -> None:
        self.script[route].extend(actions)

    def seen(self, route: str) -> list[Seen]:
        return [r for r in self.requests if r.route == route]

    @property
    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/search.json", self.serpapi),
                Route("/res/v1/web/search", self.brave),
                Route("/search", self.tavily, methods=["POST"]),
                Route("/searxng/search", self.searxng),
                Route("/jina/", self.jina, methods=["POST"]),
                Route("/v1/chat/completions", self.llm, methods=["POST"]),
                Route("/pages/{name}", self.page),
                Route("/thumbs/{name}", self.thumb),
            ]
        )

    async def _record(self, route: str, request: Request) -> tuple[Seen, Response | None]:
        body = await request.json() if request.method == "POST" else None
        seen = Seen(
            route, request.method, request.url.path, dict(request.query_params), dict(request.headers), body
        )
        self.requests.append(seen)
        queue = self.script[route]
        action = queue.popleft() if queue else None
        if action == "timeout":
            await asyncio.sleep(LATE_S)
            return seen, JSONResponse({"late": True})
        if action == "garbage":
            return seen, HTMLResponse("<html><body>Bad gateway, try later</body></html>")
        if action == "echo-key":
            return seen, self._error(
                route, 400, f"invalid request, key {KEYS.get(route)} is not allowed here"
            )
        if isinstance(action, int):
            return seen, self._error(route, action, f"stand-in answered {action}")
        return seen, None

    def _error(self, route: str, status: int, message: str) -> Response:
        headers = {"Retry-After": "0"} if status == 429 else {}
        bodies: dict[str, Any] = {
            "serpapi": {"error": message},
            "brave": {
                "type": "ErrorResponse",
                "error": {"id": "e1", "status": status, "code": "X", "detail": message},
            },
            "tavily": {"detail": {"error": message}},
            "jina": {
                "data": None,
                "code": status,
                "name": "Error",
                "status": status * 100,
                "message": message,
                "readableMessage": message,
            },
            "llm": {"error": {"message": message, "type": "error", "param": None, "code": None}},
        }
        if route not in bodies:
            return Response(f"<html>{message}</html>", status, media_type="text/html", headers=headers)
        return JSONResponse(bodies[route], status, headers=headers)

    async def serpapi(self, request: Request) -> Response:
        seen, forced = await self._record("serpapi", request)
        if forced is not None:
            return forced
        if seen.params.get("api_key") != KEYS["serpapi"]:
            return self._error(
                "serpapi", 401, "Invalid API key. Your API key should be here: https://serpapi.com"
            )
        if seen.params.get("engine") == "google_lens":
            return await self._lens(seen.params["url"])
        query = seen.params["q"]
        if query == "nothing at all":
            return JSONResponse({"search_metadata": {"status": "Success"}, "error": NO_RESULTS})
        num = int(seen.params.get("num", 10))
        organic = [
            {
                "position": i,
                "title": f"{query} - page {i}",
                "link": f"{self.base}/pages/p{i}.html",
                "snippet": f"Snippet {i} about {query}.",
            }
            for i in range(1, min(num, 8) + 1)
        ]
        return JSONResponse({"search_metadata": {"status": "Success"}, "organic_results": organic})

    async def _lens(self, url: str) -> Response:
        if self.on_lens_url is not None:
            self.on_lens_url(url)
        if url.startswith("http://127.0.0.1:"):  # an image published by a live test server
            import httpx

            async with httpx.AsyncClient() as client:  # as Google fetches it
                got = await client.get(url)
            if got.status_code == 200 and got.headers["content-type"] == "image/jpeg":
                self.lens_images.append(got.content)
        matches = [
            {
                "position": i,
                "title": f"Match {i}",
                "link": f"https://example.org/match/{i}",
                "source": "example.org",
                "thumbnail": f"{self.base}/thumbs/{i}.jpg",
            }
            for i in range(1, 7)
        ]
        matches.append(
            {
                "position": 7,
                "title": "Private",
                "link": "https://example.org/p",
                "thumbnail": "http://10.0.0.1/t.jpg",
            }
        )
        return JSONResponse({"search_metadata": {"status": "Success"}, "visual_matches": matches})

    async def brave(self, request: Request) -> Response:
        seen, forced = await self._record("brave", request)
        if forced is not None:
            return forced
        if seen.headers.get("x-subscription-token") != KEYS["brave"]:
            return self._error("brave", 401, "The provided subscription token is invalid.")
        query, count = seen.params["q"], int(seen.params.get("count", 20))
        results = [
            {
                "title": f"<strong>{query}</strong> &amp; more {i}",
                "url": f"https://brave.example/{i}",
                "description": f"About <strong>{query}</strong>, result {i}.",
                "age": "2 days ago",
            }
            for i in range(1, min(count, 20) + 1)
        ]
        return JSONResponse(
            {"type": "search", "query": {"original": query}, "web": {"type": "search", "results": results}}
        )

    async def tavily(self, request: Request) -> Response:
        seen, forced = await self._record("tavily", request)
        if forced is not None:
            return forced
        if seen.headers.get("authorization") != f"Bearer {KEYS['tavily']}":
            return self._error("tavily", 401, "Unauthorized: missing or invalid API key.")
        query, n = seen.body["query"], seen.body.get("max_results", 5)
        results = [
            {
                "title": f"Tavily {i}",
                "url": f"https://tavily.example/{i}",
                "content": f"{query} fact {i}",
                "score": 1 - i / 10,
                "raw_content": None,
            }
            for i in range(1, n + 1)
        ]
        return JSONResponse(
            {"query": query, "answer": None, "images": [], "results": results, "response_time": 0.1}
        )

    async def searxng(self, request: Request) -> Response:
        seen, forced = await self._record("searxng", request)
        if forced is not None:
            return forced
        if seen.params.get("format") != "json":
            return Response("<html>Forbidden</html>", 403, media_type="text/html")
        results = [
            {
                "url": f"https://searx.example/{i}",
                "title": f"Searx {i}",
                "content": f"{seen.params['q']} {i}",
                "engine": "duckduckgo",
                "score": 2.0 / i,
                "category": "general",
            }
            for i in range(1, 12)
        ]
        return JSONResponse(
            {
                "query": seen.params["q"],
                "number_of_results": 0,
                "results": results,
                "answers": [],
                "infoboxes": [],
                "suggestions": [],
                "unresponsive_engines": [],
            }
        )

    async def jina(self, request: Request) -> Response:
        seen, forced = await self._record("jina", request)
        if forced is not None:
            return forced
        auth = seen.headers.get("authorization")
        if auth is not None and auth != f"Bearer {KEYS['jina']}":
            return self._error("jina", 401, "Invalid API key")
        url = seen.body["url"]
        content = f"# Page at {url}\n\n" + "\n\n".join(FACTS)
        data = {
            "title": f"Read {url.rsplit('/', 1)[-1]}",
            "description": "",
            "url": url,
            "content": content,
            "usage": {"tokens": 120},
        }
        return JSONResponse({"code": 200, "status": 20000, "data": data})

    async def llm(self, request: Request) -> Response:
        seen, forced = await self._record("llm", request)
        if forced is not None:
            return forced
        if seen.headers.get("authorization") != f"Bearer {KEYS['llm']}":
            return self._error("llm", 401, "Incorrect API key provided")
        prompt = seen.body["messages"][0]["content"]
        query = re.search(r"answer this query: (.*)", prompt)
        title = re.search(r"Page title: (.*)", prompt)
        fact = next((f for f in FACTS if f in prompt), "nothing relevant")
        about = f"'{title and title.group(1)}' for '{query and query.group(1)}'"
        text = f"<think>let me see</think>Summary of {about}: {fact}"
        return JSONResponse(
            {
                "id": "chatcmpl-1",
                "object": "chat.completion",
                "created": 0,
                "model": seen.body["model"],
                "choices": [
                    {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
                ],
                "usage": {"prompt_tokens": 300, "completion_tokens": 40, "total_tokens": 340},
            }
        )

    async def page(self, request: Request) -> Response:
        _, forced = await self._record("pages", request)
        if forced is not None:
            return forced
        name = request.path_params["name"]
        if name.endswith(".pdf"):
            return Response(b"%PDF-1.4", media_type="application/pdf")
        i = int(re.sub(r"\D", "", name) or 1)
        facts = FACTS[i - 1 :] + FACTS[: i - 1]
        body = "".join(f"<p>{fact} {fact}</p>" for fact in facts)
        title = f"Page {i} about the heron"
        html = (
            f"<html><head><title>{title}</title></head><body><nav>{BOILERPLATE}</nav>"
            f"<article><h1>{title}</h1>{body}</article><footer>{BOILERPLATE}</footer></body></html>"
        )
        return HTMLResponse(html)

    async def thumb(self, request: Request) -> Response:
        await self._record("thumbs", request)
        if request.path_params["name"] == "2.jpg":
            return HTMLResponse("<html>not an image</html>")
        buf = io.BytesIO()
        Image.new("RGB", (640, 480), (200, 30, 30)).save(buf, format="JPEG")
        return Response(buf.getvalue(), media_type="image/jpeg")


NO_RESULTS = "Google hasn't returned any results for this query."
