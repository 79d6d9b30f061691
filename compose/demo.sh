#!/usr/bin/env bash
# The main job on the embedded default (SmolLM2-135M-Instruct, offline): deploy the compose stack on this
# machine, verify every engine with healthcheck, then benchmark them side by side with smoke-bench.
# A compose/.env you wrote is used as is; without one, a demo .env is written for this machine:
# the GPU overlay when Docker has the NVIDIA runtime and the GPU images are present, else the CPU overlay.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
C=${GIK_CACHE:-$HOME/.cache/gik}
BIN=$ROOT/.venv/bin
cd "$ROOT/compose"

if [ ! -f .env ]; then
  overlay=cpu
  if docker info 2>/dev/null | grep -q 'Runtimes:.*nvidia' && docker image inspect vllm/vllm-openai:v0.11.2 >/dev/null 2>&1; then
    overlay=gpu
  fi
  sed -e "s#^COMPOSE_FILE=.*#COMPOSE_FILE=compose.yaml:compose.$overlay.yaml#" \
      -e "s#^MODELS_DIR=.*#MODELS_DIR=$C/models#" .env.example >.env
  echo "demo: wrote compose/.env for the $overlay overlay (models from $C/models)"
fi
for s in hf_token vllm_api_key; do [ -e "secrets/$s" ] || install -m 600 /dev/null "secrets/$s"; done

services=(vllm llamacpp)
ollama_image=$(grep -E '^OLLAMA_IMAGE=' .env | cut -d= -f2- || true)
if docker image inspect "${ollama_image:-ollama/ollama:0.12.6}" >/dev/null 2>&1; then
  services+=(ollama)
else
  echo "demo: no Ollama image on this machine (offline, no registry): deploying vLLM and llama.cpp"
fi
GIK_BIN=$BIN bash up.sh "${services[@]}"
mkdir -p "$ROOT/reports"
"$BIN/smoke-bench" --compose . --num-prompts 16 --concurrency 4 --output-len 32 \
  --json "$ROOT/reports/bench.json" --plot "$ROOT/reports/bench.png"
echo "demo: stack is up (docker compose -f compose/compose.yaml ps); stop it with: cd compose && docker compose down"
