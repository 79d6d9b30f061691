#!/usr/bin/env bash
# Pack what tests/gpu/engine_gpu_truth.sh needs on a GPU machine without network into .gpu-carry/ (ignored by
# git, carried by the device tool; 64 MiB limit): the llama.cpp sources the kit already builds (from the
# llama-cpp-python sdist, trimmed to what llama-server and the GGUF converter need), the SmolLM2 tokenizer
# files (the random-weight model's tokenizer) and the wheels the kit needs beyond the GPU image's packages.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
GIK_CACHE=${GIK_CACHE:-$HOME/.cache/gik}
SRC="$GIK_CACHE/src/llama_cpp_python-0.3.36/vendor/llama.cpp"
OUTDIR="$ROOT/.gpu-carry"
rm -rf "$OUTDIR"; mkdir -p "$OUTDIR/tokenizer" "$OUTDIR/wheels"
tar -C "$SRC" -cJf "$OUTDIR/llama.cpp-src.tar.xz" \
  --exclude='ggml/src/ggml-sycl' --exclude='ggml/src/ggml-vulkan' --exclude='ggml/src/ggml-opencl' \
  --exclude='ggml/src/ggml-hexagon' --exclude='ggml/src/ggml-metal' --exclude='ggml/src/ggml-et' \
  --exclude='tools/ui/node_modules' --exclude='*.gguf' \
  CMakeLists.txt cmake common ggml src include tools vendor app scripts convert_hf_to_gguf.py gguf-py conversion licenses
cp "$GIK_CACHE/models/smollm2-135m-instruct-hf/"{tokenizer.json,tokenizer_config.json} "$OUTDIR/tokenizer/"
pip download -q --no-deps -d "$OUTDIR/wheels" docker sniffio 2>&1 | grep -v "neither a file" || true
# the kit as committed (HEAD), so a run measures a consistent tree even while the working tree is mid-edit
git -C "$ROOT" archive --format=tar -o "$OUTDIR/kit.tar" HEAD
du -sh "$OUTDIR"/*
