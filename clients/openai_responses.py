"""openai-python's Responses API, unchanged: each search is a ``web_search_call`` output item.

Streams the run (reasoning, each search as it starts and ends, the answer), then prints the
final response's items, as ``client.responses.stream()`` accumulated them."""

from _common import API_KEY, BASE_URL, MODEL, messages
from openai import OpenAI


def responses_input() -> list[dict[str, object]]:
    """The chat-style question of the other examples as a Responses ``input`` message."""
    parts: list[dict[str, object]] = []
    for part in messages()[0]["content"]:
        if part["type"] == "text":
            parts.append({"type": "input_text", "text": part["text"]})
        else:
            parts.append({"type": "input_image", "image_url": part["image_url"]["url"]})
    return [{"role": "user", "content": parts}]


client = OpenAI(base_url=BASE_URL, api_key=API_KEY)
with client.responses.stream(
    model=MODEL,
    input=responses_input(),  # type: ignore[arg-type]
    instructions="Answer with a name or a few words.",
    tools=[{"type": "web_search"}],
    max_output_tokens=1024,  # per model turn
) as stream:
    for event in stream:
        if event.type == "response.output_item.added" and event.item.type == "web_search_call":
            query = event.item.action.query  # type: ignore[union-attr]
            print(f"[searching: {query or 'the image'}]")
        elif event.type == "response.output_item.done" and event.item.type == "web_search_call":
            sources = event.item.action.sources or []  # type: ignore[union-attr]
            print(f"[searched: {len(sources)} sources]")
        elif event.type == "response.output_text.delta":
            print(event.delta, end="", flush=True)
    response = stream.get_final_response()
print()
print("answer:", response.output_text, f"({response.status})")
print("items:", " -> ".join(item.type for item in response.output))
for item in response.output:
    if item.type == "message":
        for annotation in item.content[0].annotations:  # type: ignore[union-attr]
            print("  source:", annotation.url)  # type: ignore[union-attr]
usage = response.usage
if usage is not None:
    extra = usage.model_extra or {}
    print(f"usage: {usage.total_tokens} tokens, searches: {extra.get('search_calls')}")
