"""openai-python, streaming: reasoning, search progress and the answer as they happen."""

from _common import API_KEY, BASE_URL, MODEL, messages
from mmsr_extras import reasoning_delta, search_progress
from openai import OpenAI

client = OpenAI(base_url=BASE_URL, api_key=API_KEY)
stream = client.chat.completions.create(
    model=MODEL, messages=messages(), stream=True, stream_options={"include_usage": True}
)
answer = ""
for chunk in stream:
    for search in search_progress(chunk):
        if search["status"] == "started":
            print(f"\n[{search['kind']} search {search['query'] or ''}]", flush=True)
        else:
            print(f"[{len(search['results'])} results in {search['latency_ms']} ms]", flush=True)
    if piece := reasoning_delta(chunk):
        print(piece, end="", flush=True)
    elif chunk.choices and chunk.choices[0].delta.content:
        answer += chunk.choices[0].delta.content
    if chunk.choices and chunk.choices[0].finish_reason:
        print(f"\nanswer: {answer} ({chunk.choices[0].finish_reason})")
    if chunk.usage:
        print(f"usage: {chunk.usage.total_tokens} tokens, {chunk.usage.model_extra['search_calls']}")
