"""openai-python, synchronous, unchanged: our extras come through ``extra_body`` and ``model_extra``."""

from _common import API_KEY, BASE_URL, MODEL, messages
from mmsr_extras import citations, reasoning, search_calls, trace
from openai import OpenAI

client = OpenAI(base_url=BASE_URL, api_key=API_KEY)
completion = client.chat.completions.create(
    model=MODEL,
    messages=messages(),
    max_tokens=1024,  # per model turn
    extra_body={"search_mode": "auto", "return_trace": True},
)
print("answer:", completion.choices[0].message.content)
print("finish_reason:", completion.choices[0].finish_reason)
print("reasoning:", reasoning(completion))
print("search calls:", search_calls(completion))
print("citations:", citations(completion))
steps = (trace(completion) or {}).get("steps", [])
print("turns:", " -> ".join(s["action"] for s in steps if s["type"] == "turn"))
for s in steps:
    if s["type"] == "search":
        print(f"  {s['kind']} search {s['query'] or ''}: {len(s['results'])} results, {s['latency_ms']} ms")
