"""openai-python, asynchronous: several questions at once (each runs its own search loop)."""

import asyncio

from _common import API_KEY, BASE_URL, MODEL, messages
from mmsr_extras import search_calls
from openai import AsyncOpenAI


async def main() -> None:
    async with AsyncOpenAI(base_url=BASE_URL, api_key=API_KEY) as client:
        modes = ["auto", "off"]
        requests = [
            client.chat.completions.create(model=MODEL, messages=messages(), extra_body={"search_mode": mode})
            for mode in modes
        ]
        completions = await asyncio.gather(*requests)
        for mode, completion in zip(modes, completions, strict=True):
            print(f"{mode}: {completion.choices[0].message.content!r} searches={search_calls(completion)}")


asyncio.run(main())
