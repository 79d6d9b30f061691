#!/usr/bin/env bash
# The main job on the embedded default: deploy the engines, then verify them with the kit's own CLIs.
# (Temporary: runs the engines as host processes until the compose project lands.)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
C=${GIK_CACHE:-$HOME/.cache/gik}
mkdir -p "$ROOT/reports"
HF_HUB_OFFLINE=1 VLLM_CPU_KVCACHE_SPACE=1 "$C/venv-vllm/bin/python" -m vllm.entrypoints.openai.api_server \
  --model "$C/models/smollm2-135m-instruct-hf" --served-model-name smollm2:135m --host 127.0.0.1 --port 8000 \
  --max-model-len 2048 --enforce-eager >"$ROOT/reports/vllm.log" 2>&1 &
V=$!
"$C/llama.cpp/bin/llama-server" -m "$C/models/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf" \
  --alias smollm2:135m --host 127.0.0.1 --port 8080 --metrics >"$ROOT/reports/llamacpp.log" 2>&1 &
L=$!
trap 'kill $V $L 2>/dev/null || true' EXIT
"$ROOT/.venv/bin/healthcheck" vllm=http://127.0.0.1:8000 llamacpp=http://127.0.0.1:8080 --wait 300
"$ROOT/.venv/bin/smoke-bench" vllm=http://127.0.0.1:8000 llamacpp=http://127.0.0.1:8080 --num-prompts 16 \
  --concurrency 4 --output-len 32 --json "$ROOT/reports/bench.json" --plot "$ROOT/reports/bench.png"
