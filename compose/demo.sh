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
  # the GPU overlay when Docker has the NVIDIA runtime and every GPU image compose pins is here
  gpu_images=$(docker compose -f compose.yaml -f compose.gpu.yaml config --images 2>/dev/null || true)
  if docker info 2>/dev/null | grep -q 'Runtimes:.*nvidia' && [ -n "$gpu_images" ] \
     && xargs -r docker image inspect <<<"$gpu_images" >/dev/null 2>&1; then
    overlay=gpu
  fi
  sed -e "s#^COMPOSE_FILE=.*#COMPOSE_FILE=compose.yaml:compose.$overlay.yaml#" \
      -e "s#^MODELS_DIR=.*#MODELS_DIR=$C/models#" .env.example >.env
  echo "demo: wrote compose/.env for the $overlay overlay (models from $C/models)"
fi
for s in hf_token vllm_api_key; do [ -e "secrets/$s" ] || install -m 600 /dev/null "secrets/$s"; done

# the deployed engines (healthchecks/stack.yml) whose image this machine has: offline there is no registry
services=()
for s in $("$BIN/python" -c 'from healthchecks.stack import load; print(*load().deployed)'); do
  image=$(docker compose config --images "$s" 2>/dev/null | head -n1 || true)
  if [ -z "$image" ] || docker image inspect "$image" >/dev/null 2>&1; then
    services+=("$s")
  else
    echo "demo: no $s image ($image) on this machine (offline, no registry): leaving $s out"
  fi
done
GIK_BIN=$BIN bash up.sh "${services[@]}"
mkdir -p "$ROOT/reports"
"$BIN/smoke-bench" --compose . --num-prompts 16 --concurrency 4 --output-len 32 \
  --json "$ROOT/reports/bench.json" --plot "$ROOT/reports/bench.png"
echo "demo: stack is up (docker compose -f compose/compose.yaml ps); stop it with: cd compose && docker compose down"
