#!/bin/bash
# Seconds from `mmsr serve` (no arguments: the embedded default) to `/ready` answering 200, on a
# fresh cache (the demo world generated), then again with the world in place.
#   bash benchmarks/first_start.sh [CHECKOUT] [PORT]
# CHECKOUT defaults to this repository (run another revision from its own checkout: the server
# is started from there, so its own code is the one that runs); the checkout's venv must exist.
set -u
dir=$(cd "${1:-$(dirname "$0")/..}" && pwd); port=${2:-8311}
python=${PYTHON:-$dir/.venv/bin/python}
cache=$(mktemp -d)
cd "$dir"

# Start the server, wait for /ready, stop it; print the seconds it took.
time_to_ready() {
  local start end pid
  start=$(date +%s.%N)
  XDG_CACHE_HOME=$cache PYTHONPATH=$dir $python -m mmsr_serve.cli serve --port "$port" > "$cache.log" 2>&1 &
  pid=$!
  until curl -s -o /dev/null -w "%{http_code}" "127.0.0.1:$port/ready" 2>/dev/null | grep -q 200; do
    if ! kill -0 $pid 2>/dev/null; then echo "the server exited:" >&2; cat "$cache.log" >&2; exit 1; fi
    sleep 0.1
  done
  end=$(date +%s.%N)
  kill $pid; wait $pid 2>/dev/null
  $python -c "print(round($end - $start, 1))"
}

first=$(time_to_ready) || exit 1
second=$(time_to_ready) || exit 1  # the world is in place now
rm -rf "$cache" "$cache.log"
echo "$dir: first start ${first} s, second start ${second} s"
