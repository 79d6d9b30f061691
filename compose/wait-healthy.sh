#!/usr/bin/env bash
# Wait until every container of the given services is running and, where it has a healthcheck, Docker itself
# reports it healthy: what `docker compose up --wait` does, for Compose v1, which has no --wait. up.sh, the
# Ansible role and the pyinfra deploy run it after `docker-compose up -d`, so "the deployer returned" means the
# same on v1 and v2 (without it `docker ps` can still say "starting": an engine answers before Docker's next
# probe).
#   wait-healthy.sh TIMEOUT_SECONDS SERVICE [SERVICE ...]
# Run it in the compose project's folder (project name and files as compose resolves them: .env, environment).
# COMPOSE picks the command (default docker-compose; "docker compose" works too).
# Exit 0: all healthy; 1: a container unhealthy, exited or dead (named), or the timeout; 2: usage.
set -euo pipefail
usage() { echo "usage: wait-healthy.sh TIMEOUT_SECONDS SERVICE [SERVICE ...]" >&2; exit 2; }
[ $# -ge 2 ] || usage
[[ $1 =~ ^[0-9]+$ ]] || { echo "wait-healthy.sh: TIMEOUT_SECONDS must be a whole number of seconds, got '$1'" >&2; exit 2; }
timeout=$1
shift
read -r -a compose <<<"${COMPOSE:-docker-compose}"
ps_args=(ps -q)
[ "${compose[0]}" = docker-compose ] || ps_args=(ps -a -q)  # v2 lists stopped containers only with -a

deadline=$(( $(date +%s) + timeout ))
next_note=0
while :; do
  ids=$("${compose[@]}" "${ps_args[@]}" "$@")
  [ -n "$ids" ] || { echo "wait-healthy.sh: no container for: $*" >&2; exit 1; }
  # one line per container: name, state, health ("none" without a healthcheck)
  # shellcheck disable=SC2086  # one id per word
  states=$(docker inspect -f '{{.Name}} {{.State.Status}} {{if .State.Health}}{{.State.Health.Status}}{{else}}none{{end}}' $ids)
  bad=$(awk '$3 == "unhealthy" || $2 == "exited" || $2 == "dead" {sub("^/", "", $1); printf "%s (%s, %s) ", $1, $2, $3}' <<<"$states")
  if [ -n "$bad" ]; then
    echo "wait-healthy.sh: ${bad}-- see: ${compose[*]} logs" >&2
    exit 1
  fi
  pending=$(awk '$2 != "running" || ($3 != "healthy" && $3 != "none") {sub("^/", "", $1); printf "%s ", $1}' <<<"$states")
  [ -n "$pending" ] || exit 0
  if [ "$(date +%s)" -ge "$deadline" ]; then
    echo "wait-healthy.sh: still not healthy after ${timeout}s: ${pending}(raise the timeout)" >&2
    exit 1
  fi
  if [ "$(date +%s)" -ge "$next_note" ]; then
    echo "wait-healthy.sh: waiting for Docker to report healthy: ${pending}" >&2
    next_note=$(( $(date +%s) + 60 ))
  fi
  sleep 2
done
