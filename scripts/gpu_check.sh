#!/usr/bin/env bash
# The training GPU check (docs/training.md, "Measured"): the tiny GRPO step on CUDA in bfloat16.
#
# On a GPU machine with torch but without TRL (the project's device machines), the missing packages
# travel as wheels in .whl/, fetched beforehand where pip can reach PyPI:
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#     --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 -d .whl \
#     trl==1.16.0 transformers==5.24.0 datasets==5.2.0 dill==0.4.1 multiprocess==0.70.19 ImageHash==4.3.2
# Usage: scripts/gpu_check.sh [OUT_DIR]   (prints the figures as JSON; exit 1 if a check fails)
set -euo pipefail
out="${1:-${OUT:-gpu-check-out}}"
mkdir -p "$out"
if compgen -G ".whl/*.whl" >/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH="/tmp/site:${PWD}${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONUNBUFFERED=1 TRL_EXPERIMENTAL_SILENCE=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
python3 scripts/gpu_check.py /tmp/mmsr-gpu-check
cp /tmp/mmsr-gpu-check/gpu_check.json "$out/"
