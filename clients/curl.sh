#!/usr/bin/env bash
# curl against mmsr serve: one plain request, one with an image and the trace, one streamed.
# Usage: clients/curl.sh [image.jpg]     (MMSR_URL, MMSR_API_KEY, MMSR_MODEL as for the Python examples;
# without MMSR_MODEL, the first model GET /v1/models lists)
set -euo pipefail
URL="${MMSR_URL:-http://127.0.0.1:8080/v1}"
KEY="${MMSR_API_KEY:-EMPTY}"
MODEL="${MMSR_MODEL:-$(curl -sS --fail-with-body "$URL/models" -H "Authorization: Bearer $KEY" |
  grep -o '"id": *"[^"]*"' | head -n 1 | sed -E 's/.*"([^"]*)"$/\1/')}"

curl -sS --fail-with-body "$URL/chat/completions" \
  -H "Authorization: Bearer $KEY" -H "Content-Type: application/json" \
  -d "{\"model\": \"$MODEL\", \"messages\": [{\"role\": \"user\", \"content\": \"Who designed the Eiffel Tower?\"}]}"
echo

if [ $# -ge 1 ]; then
  IMAGE="data:image/jpeg;base64,$(base64 -w0 "$1")"
  printf '{"model": "%s", "return_trace": true, "messages": [{"role": "user", "content": [
    {"type": "text", "text": "What is this?"}, {"type": "image_url", "image_url": {"url": "%s"}}]}]}' \
    "$MODEL" "$IMAGE" |
  curl -sS --fail-with-body "$URL/chat/completions" \
    -H "Authorization: Bearer $KEY" -H "Content-Type: application/json" -d @-
  echo
fi

curl -sS -N --fail-with-body "$URL/chat/completions" \
  -H "Authorization: Bearer $KEY" -H "Content-Type: application/json" \
  -d "{\"model\": \"$MODEL\", \"stream\": true, \"stream_options\": {\"include_usage\": true},
       \"messages\": [{\"role\": \"user\", \"content\": \"Who designed the Eiffel Tower?\"}]}"
