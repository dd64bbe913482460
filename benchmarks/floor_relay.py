"""The floor of a Python gateway on this stack: the least a relay can do for one chat call.

    python benchmarks/floor_relay.py --model-url http://127.0.0.1:PORT/v1 --port 8100

A raw ASGI app under uvicorn (uvloop and httptools, as ``mmsr serve``) that takes
``POST /v1/chat/completions``, sends its messages to the model server as one streamed call over
a kept-alive aiohttp session (as mmsr's model backend does), joins the content deltas and answers
one ``chat.completion``. No validation, no images decoded, no search, no metrics, no auth: what it
costs is what uvicorn, aiohttp, orjson and the event loop cost per call, which no gateway built on
them can go below. benchmarks/gateway_anchor.py runs it as the ``floor relay`` row.
"""

from __future__ import annotations

import argparse
import time
import uuid
from typing import Any

import aiohttp
import orjson
import uvicorn

_HEADERS = [(b"content-type", b"application/json")]


class FloorRelay:
    def __init__(self, model_url: str) -> None:
        self.url = model_url.rstrip("/") + "/chat/completions"
        self.session: aiohttp.ClientSession | None = None

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while (message := await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            if self.session is not None:
                await self.session.close()
            await send({"type": "lifespan.shutdown.complete"})
            return
        body = b""
        more = True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        if scope["path"] != "/v1/chat/completions":
            await _answer(send, 404, b'{"error": {"message": "not found"}}')
            return
        request = orjson.loads(body)
        upstream = {
            "model": request["model"],
            "messages": request["messages"],
            "max_tokens": request.get("max_tokens", 512),
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        if self.session is None:
            self.session = aiohttp.ClientSession()
        text: list[str] = []
        usage = None
        async with self.session.post(
            self.url, data=orjson.dumps(upstream), headers={"content-type": "application/json"}
        ) as response:
            async for line in response.content:
                if not line.startswith(b"data: ") or line.startswith(b"data: [DONE]"):
                    continue
                chunk = orjson.loads(line[6:])
                usage = chunk.get("usage") or usage
                for choice in chunk.get("choices") or ():
                    text.append(choice.get("delta", {}).get("content") or "")
        completion = {
            "id": f"chatcmpl-{uuid.uuid4().hex}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": request["model"],
            "choices": [
                {
                    "index": 0,
                    "finish_reason": "stop",
                    "message": {"role": "assistant", "content": "".join(text)},
                }
            ],
            "usage": usage,
        }
        await _answer(send, 200, orjson.dumps(completion))


async def _answer(send: Any, status: int, body: bytes) -> None:
    await send({"type": "http.response.start", "status": status, "headers": _HEADERS})
    await send({"type": "http.response.body", "body": body})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-url", required=True, help="the model server's base URL, ending in /v1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    uvicorn.run(FloorRelay(args.model_url), host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
