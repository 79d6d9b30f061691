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

# Compose v1 has no --wait: do what v2's does, so "up.sh returned" means the same on both. Every container of
# the services is running and, where it has a healthcheck, Docker itself reports it healthy (the endpoint can
# answer before Docker's next probe: without this, `docker ps` still says "starting" after up.sh returns).
wait_v1() {
  local deadline=$(( $(date +%s) + $1 )) ids states pending bad next_note=0
  shift
  while :; do
    ids=$(docker-compose ps -q "$@")
    [ -n "$ids" ] || { echo "up.sh: docker-compose started no container for: $*" >&2; exit 1; }
    # name, state, health ("none" without a healthcheck)
    # shellcheck disable=SC2086
    states=$(docker inspect -f '{{.Name}} {{.State.Status}} {{if .State.Health}}{{.State.Health.Status}}{{else}}none{{end}}' $ids)
    bad=$(awk '$3 == "unhealthy" || $2 == "exited" || $2 == "dead" {sub("^/", "", $1); print $1 " (" $2 ", " $3 ")"}' <<<"$states")
    if [ -n "$bad" ]; then
      echo "up.sh: container(s) failed: $(tr '\n' ' ' <<<"$bad")-- see: docker-compose logs" >&2
      exit 1
    fi
    pending=$(awk '$2 != "running" || ($3 != "healthy" && $3 != "none") {sub("^/", "", $1); print $1}' <<<"$states")
    [ -n "$pending" ] || return 0
    if [ "$(date +%s)" -ge "$deadline" ]; then
      echo "up.sh: still not healthy after $WAIT s: $(tr '\n' ' ' <<<"$pending")(GIK_WAIT_TIMEOUT raises the limit)" >&2
      exit 1
    fi
    if [ "$(date +%s)" -ge "$next_note" ]; then
      echo "up.sh: waiting for Docker to report healthy: $(tr '\n' ' ' <<<"$pending")" >&2
      next_note=$(( $(date +%s) + 60 ))
    fi
    sleep 2
  done
}

mode=${GIK_COMPOSE:-auto}  # auto, v2 or v1
if [ "$mode" != v1 ] && docker compose version >/dev/null 2>&1; then
  docker compose up -d --wait --wait-timeout "$WAIT" "${up[@]}"
elif [ "$mode" != v2 ] && command -v docker-compose >/dev/null 2>&1; then
  docker-compose up -d "${up[@]}"
  wait_v1 "$WAIT" "${up[@]}"
else
  echo "up.sh: neither 'docker compose' (v2) nor docker-compose (v1) is installed" >&2
  exit 2
fi
exec "$BIN/healthcheck" --compose "$HERE" --wait "$WAIT"
