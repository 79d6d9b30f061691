#!/usr/bin/env bash
# Bring the stack up and return only when every engine answers a real completion.
#   compose/up.sh [SERVICE ...]      default: the deployed engines of healthchecks/stack.yml (compose-preflight
#                                    --help lists them); companions follow their engine (ollama-models: ollama)
# Uses `docker compose up -d --wait` (v2); on hosts with only docker-compose v1 it runs `up -d` and waits
# for Docker's health status itself (GIK_COMPOSE=v1|v2 forces one). Either way `healthcheck --compose
# --wait` has the last word.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
cd "$HERE"
services=("$@")
BIN=${GIK_BIN:-$HERE/../.venv/bin}
[ -x "$BIN/healthcheck" ] || BIN=$(dirname "$(command -v healthcheck)")
WAIT=${GIK_WAIT_TIMEOUT:-1800}

# the checks, then the compose services to start (the engines and their companions) from the stack catalogue
chosen=()
[ ${#services[@]} -eq 0 ] || chosen=(--services "$(IFS=,; echo "${services[*]}")")
start=$("$BIN/compose-preflight" "$HERE" "${chosen[@]}" --print-services)
read -r -a up <<<"$start"

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
