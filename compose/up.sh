#!/usr/bin/env bash
# Bring the stack up and return only when every engine answers a real completion.
#   compose/up.sh [SERVICE ...]      default: vllm llamacpp ollama  (ollama-models follows ollama)
# Uses `docker compose up -d --wait` (v2); on hosts with only docker-compose v1 it runs `up -d` and waits
# for Docker's health status itself (GIK_COMPOSE=v1|v2 forces one). Either way `healthcheck --compose
# --wait` has the last word.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
cd "$HERE"
services=("$@")
[ ${#services[@]} -gt 0 ] || services=(vllm llamacpp ollama)
BIN=${GIK_BIN:-$HERE/../.venv/bin}
[ -x "$BIN/healthcheck" ] || BIN=$(dirname "$(command -v healthcheck)")
WAIT=${GIK_WAIT_TIMEOUT:-1800}

"$BIN/compose-preflight" "$HERE" --services "$(IFS=,; echo "${services[*]}")"
up=("${services[@]}")
for s in "${services[@]}"; do [ "$s" = ollama ] && up+=(ollama-models); done

mode=${GIK_COMPOSE:-auto}  # auto, v2 or v1
if [ "$mode" != v1 ] && docker compose version >/dev/null 2>&1; then
  docker compose up -d --wait --wait-timeout "$WAIT" "${up[@]}"
elif [ "$mode" != v2 ] && command -v docker-compose >/dev/null 2>&1; then
  docker-compose up -d "${up[@]}"
  bash "$HERE/wait-healthy.sh" "$WAIT" "${up[@]}"  # v1 has no --wait: the same wait, by hand
else
  echo "up.sh: neither 'docker compose' (v2) nor docker-compose (v1) is installed" >&2
  exit 2
fi
exec "$BIN/healthcheck" --compose "$HERE" --wait "$WAIT"
