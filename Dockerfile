# The GPU image: vLLM serves the checkpoint on 127.0.0.1:8000 (inside the container only) and
# `mmsr serve` runs the search loop in front of it on 0.0.0.0:8080 (the one published port).
#
#   docker build -t mmsr .
#   docker run --gpus all -p 8080:8080 \
#     -v /path/to/checkpoint:/models/checkpoint:ro -v /path/to/corpus:/data/corpus \
#     -e MMSR_API_KEY=change-me mmsr
#
# Ports: 8080 mmsr (OpenAI-compatible API, /health, /ready, /metrics); 8000 vLLM (not published).
# Settings: any MMSR_* variable (see docs/server.md); VLLM_ARGS adds flags to `vllm serve`.
# Several vLLM replicas: run this image's vLLM elsewhere and point MMSR_BACKEND_URL at them
# (comma-separated), or run `mmsr serve` alone (docs/server.md, "Deploying").
ARG VLLM_VERSION=v0.11.0
FROM vllm/vllm-openai:${VLLM_VERSION}

ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    MODEL_PATH=/models/checkpoint \
    MMSR_MODEL=mmsr \
    MMSR_BACKEND=openai \
    MMSR_BACKEND_URL=http://127.0.0.1:8000/v1 \
    MMSR_HOST=0.0.0.0 \
    MMSR_PORT=8080 \
    VLLM_ARGS="--max-model-len 16384 --limit-mm-per-prompt {\"image\":10} --gpu-memory-utilization 0.9"

WORKDIR /opt/mmsr
COPY pyproject.toml README.md ./
COPY mmsr_serve ./mmsr_serve
COPY mmsr_train ./mmsr_train
COPY mmsr_bench ./mmsr_bench
# The project itself (its pins live in pyproject.toml), with the web search providers.
# hadolint ignore=DL3013
RUN python3 -m pip install --no-cache-dir ".[web]" \
    && useradd --create-home --uid 1000 mmsr \
    && mkdir -p /models /data \
    && chown mmsr:mmsr /data

USER 1000:1000
EXPOSE 8080

HEALTHCHECK --interval=30s --timeout=5s --start-period=600s --retries=3 \
    CMD ["python3", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/ready', timeout=4)"]

# vLLM in the background, mmsr in the foreground (PID 1 via exec): when vLLM dies, /ready fails
# and the health check marks the container unhealthy. A checkpoint trained by mmsr_train carries
# the prompt pack it was trained with: use it unless MMSR_PROMPT_PACK says otherwise.
# Images per prompt: up to MMSR_MAX_IMAGES (4) from the user plus top-k (5) search thumbnails.
ENTRYPOINT ["/bin/sh", "-c", "if [ -z \"$MMSR_PROMPT_PACK\" ] && [ -f \"$MODEL_PATH/prompt_pack.json\" ]; then export MMSR_PROMPT_PACK=\"$MODEL_PATH/prompt_pack.json\"; fi; vllm serve \"$MODEL_PATH\" --served-model-name \"$MMSR_MODEL\" --host 127.0.0.1 --port 8000 $VLLM_ARGS & exec mmsr serve \"$@\"", "mmsr"]
CMD []
