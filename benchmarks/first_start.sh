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
cd $dir
start=$(date +%s.%N)
XDG_CACHE_HOME=$cache PYTHONPATH=$dir $python -m mmsr_serve.cli serve --port $port > "$cache.log" 2>&1 &
pid=$!
while true; do
  if curl -s -o /dev/null -w "%{http_code}" 127.0.0.1:$port/ready 2>/dev/null | grep -q 200; then break; fi
  if ! kill -0 $pid 2>/dev/null; then echo "the server exited:"; cat "$cache.log"; exit 1; fi
  sleep 0.1
done
end=$(date +%s.%N)
first=$($python -c "print(round($end - $start, 1))")
kill $pid; wait $pid 2>/dev/null
# second start, world present
start=$(date +%s.%N)
XDG_CACHE_HOME=$cache PYTHONPATH=$dir $python -m mmsr_serve.cli serve --port $port > "$cache.log" 2>&1 &
pid=$!
while ! curl -s -o /dev/null -w "%{http_code}" 127.0.0.1:$port/ready 2>/dev/null | grep -q 200; do sleep 0.1; done
end=$(date +%s.%N)
second=$($python -c "print(round($end - $start, 1))")
kill $pid; wait $pid 2>/dev/null
rm -rf $cache "$cache.log"
echo "$dir: first start ${first} s, second start ${second} s"
