#!/usr/bin/env bash
# GPU truth on a real GPU machine without Docker or network (the device tool's H100):
#   1. build llama.cpp's llama-server with CUDA (sm_90) from the sources the kit already builds for CPU
#   2. make a random-weight Llama-shaped model with transformers (SmolLM2's tokenizer), convert it to GGUF
#      with llama.cpp's own convert_hf_to_gguf.py
#   3. serve it twice: on the GPU (-ngl 99) and with the GPU hidden (CUDA_VISIBLE_DEVICES=""), which makes
#      llama-server fall back to the CPU and still answer every request
#   4. `healthcheck --expect-gpu` on both (pass vs fail), `smoke-bench` on both with per-engine GPU memory,
#      nvidia-smi's own per-process figure beside it, and the remote-host path (`gpu-report` on samples
#      taken with the verify role's nvidia-smi loops)
# Inputs: .gpu-carry/ from tests/gpu/pack_carry.sh (carried). Outputs: $OUT (JSON, PNG, logs, fixtures).
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
OUT=${OUT:-/tmp/gik-gpu-out}
W=${GIK_GPU_WORK:-/tmp/gik-gpu}
CARRY="$ROOT/.gpu-carry"
mkdir -p "$OUT" "$W" "$OUT/fixtures"
log() { printf '[gpu %s] %s\n' "$(date +%H:%M:%S)" "$*"; }
t0=$(date +%s)

log "kit: install (no network: carried wheels, --no-deps)"
python3 -m pip install -q --no-index --no-deps "$CARRY"/wheels/*.whl >/dev/null 2>&1 || true
KIT="$ROOT"
if [ -f "$CARRY/kit.tar" ]; then KIT="$W/kit" && rm -rf "$KIT" && mkdir -p "$KIT" && tar -C "$KIT" -xf "$CARRY/kit.tar"; fi
python3 -m pip install -q --no-deps --no-build-isolation "$KIT" >"$W/pip.log" 2>&1 || { tail -n 20 "$W/pip.log"; exit 1; }
export PATH="$(python3 -c 'import sysconfig; print(sysconfig.get_path("scripts"))'):$PATH"
healthcheck --version || exit 1

SERVER="$W/build/bin/llama-server"
if [ ! -x "$SERVER" ]; then
  log "llama-server: CUDA build (sm_90)"
  mkdir -p "$W/src" && tar -C "$W/src" -xJf "$CARRY/llama.cpp-src.tar.xz"
  cmake -S "$W/src" -B "$W/build" -DCMAKE_BUILD_TYPE=Release -DGGML_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90 \
    -DLLAMA_CURL=OFF -DLLAMA_BUILD_UI=OFF -DLLAMA_USE_PREBUILT_UI=OFF -DLLAMA_BUILD_TESTS=OFF \
    -DLLAMA_BUILD_EXAMPLES=OFF -DBUILD_SHARED_LIBS=OFF >"$W/build.log" 2>&1 \
    && cmake --build "$W/build" --target llama-server -j "$(nproc)" >>"$W/build.log" 2>&1 \
    || { tail -n 40 "$W/build.log"; exit 1; }
fi
log "llama-server built ($(( $(date +%s) - t0 ))s so far)"

MODEL="$W/rand-llama.gguf"
if [ ! -f "$MODEL" ]; then
  log "model: random-weight Llama (transformers) -> GGUF (convert_hf_to_gguf.py)"
  python3 - "$W/rand-llama-hf" "$CARRY/tokenizer" <<'PY' || exit 1
import shutil, sys, torch
from transformers import LlamaConfig, LlamaForCausalLM
out, tok = sys.argv[1], sys.argv[2]
torch.manual_seed(0)
cfg = LlamaConfig(vocab_size=49152, hidden_size=1024, intermediate_size=2816, num_hidden_layers=8,
                  num_attention_heads=16, num_key_value_heads=4, max_position_embeddings=4096,
                  tie_word_embeddings=False, bos_token_id=1, eos_token_id=2)
model = LlamaForCausalLM(cfg).to(torch.float16)
model.save_pretrained(out, safe_serialization=True)
for f in ("tokenizer.json", "tokenizer_config.json"):
    shutil.copy(f"{tok}/{f}", out)
print("params", sum(p.numel() for p in model.parameters()))
PY
  python3 "$W/src/convert_hf_to_gguf.py" "$W/rand-llama-hf" --outfile "$MODEL" --outtype f16 \
    >"$W/convert.log" 2>&1 || { tail -n 30 "$W/convert.log"; exit 1; }
fi
ls -la "$MODEL"

GPU_PORT=18080 CPU_PORT=18081
common=(-m "$MODEL" --host 127.0.0.1 --alias rand-llama -c 4096 --parallel 4 --metrics -t 8)
"$SERVER" "${common[@]}" --port $GPU_PORT -ngl 99 >"$W/gpu-server.log" 2>&1 &
GPU_PID=$!
CUDA_VISIBLE_DEVICES="" "$SERVER" "${common[@]}" --port $CPU_PORT -ngl 99 >"$W/cpu-server.log" 2>&1 &
CPU_PID=$!
trap 'kill $GPU_PID $CPU_PID 2>/dev/null' EXIT
for port in $GPU_PORT $CPU_PORT; do
  for _ in $(seq 1 120); do curl -sf "http://127.0.0.1:$port/health" >/dev/null && break; sleep 1; done
done
log "servers up: GPU pid $GPU_PID, GPU-hidden pid $CPU_PID"

# recorded outputs for CI's parsing and attribution tests
nvidia-smi >"$OUT/fixtures/nvidia-smi-two-servers.txt" 2>&1
nvidia-smi --query-compute-apps=pid,used_memory,gpu_uuid --format=csv,noheader,nounits >"$OUT/fixtures/compute-apps.csv"
nvidia-smi --query-gpu=index,uuid,memory.used --format=csv,noheader,nounits >"$OUT/fixtures/gpus.csv"
echo "{\"gpu_server\": $GPU_PID, \"cpu_server\": $CPU_PID}" >"$OUT/fixtures/pids.json"
head -c 20000 "$W/cpu-server.log" >"$OUT/fixtures/cpu-server-head.log"
cat "$OUT/fixtures/compute-apps.csv"

log "healthcheck --expect-gpu: GPU server (expect exit 0) and GPU-hidden server (expect exit 1)"
healthcheck llamacpp=http://127.0.0.1:$GPU_PORT --expect-gpu --json --no-diagnose >"$OUT/healthcheck-gpu.json"
hc_gpu=$?
healthcheck llamacpp=http://127.0.0.1:$CPU_PORT --expect-gpu --json --no-diagnose >"$OUT/healthcheck-cpu.json"
hc_cpu=$?
healthcheck llamacpp=http://127.0.0.1:$GPU_PORT llamacpp=http://127.0.0.1:$CPU_PORT --expect-gpu --no-diagnose || true
echo "healthcheck exit codes: GPU server $hc_gpu (want 0), GPU-hidden server $hc_cpu (want 1)"

log "smoke-bench both, per-engine GPU memory; verify role's samplers on the side (remote path)"
S="$W/samples"; mkdir -p "$S"
plot=(); python3 -c "import matplotlib" 2>/dev/null && plot=(--plot "$OUT/bench.png")
nvidia-smi --query-compute-apps=timestamp,pid,used_memory,gpu_uuid --format=csv,noheader,nounits -lms 500 >"$S/apps.csv" &
A=$!
nvidia-smi --query-gpu=timestamp,index,uuid,memory.used --format=csv,noheader,nounits -lms 500 >"$S/gpus.csv" &
G=$!
python3 -c "import json,sys; print(json.dumps({'llamacpp': [int(sys.argv[1])]}))" $GPU_PID >"$S/pids.json"
smoke-bench llamacpp=http://127.0.0.1:$GPU_PORT llamacpp=http://127.0.0.1:$CPU_PORT --num-prompts 32 \
  --concurrency 4 --output-len 64 --json "$OUT/bench.json" "${plot[@]}" 2>&1 | tee "$OUT/bench.txt"
bench_rc=${PIPESTATUS[0]}
nvidia-smi --query-compute-apps=pid,used_memory --format=csv,noheader,nounits >"$W/after.csv"
kill $A $G 2>/dev/null; wait $A $G 2>/dev/null
cp "$OUT/bench.json" "$W/bench-remote.json"
gpu-report "$S" --bench-json "$W/bench-remote.json" --expect-gpu
gr_rc=$?
cp "$S/apps.csv" "$OUT/fixtures/sampler-apps.csv"; cp "$S/gpus.csv" "$OUT/fixtures/sampler-gpus.csv"

python3 - "$OUT" "$GPU_PID" "$W/after.csv" "$W/bench-remote.json" "$hc_gpu" "$hc_cpu" "$bench_rc" "$gr_rc" <<'PY'
import json, sys
out, gpu_pid, after, remote, hc_gpu, hc_cpu, bench_rc, gr_rc = sys.argv[1:]
smi = {int(l.split(",")[0]): float(l.split(",")[1]) for l in open(after) if l.strip()}
bench = json.load(open(f"{out}/bench.json"))["endpoints"]
hc = {k: json.load(open(f"{out}/healthcheck-{k}.json")) for k in ("gpu", "cpu")}
row = {k: next((c for c in v["endpoints"][0]["checks"] if c["name"] == "gpu_residency"), None) for k, v in hc.items()}
eng = bench[0]["gpu_memory"]["engine_peak_mib"].get("0", 0.0)
ref = smi.get(int(gpu_pid), 0.0)
summary = {
    "healthcheck_exit": {"gpu_server": int(hc_gpu), "gpu_hidden_server": int(hc_cpu)},
    "gpu_residency_rows": row,
    "bench_gpu_memory": [b["gpu_memory"] for b in bench],
    "nvidia_smi_process_mib": ref,
    "engine_peak_vs_nvidia_smi_pct": round(100 * (eng - ref) / ref, 2) if ref else None,
    "remote_path_gpu_memory": [b.get("gpu_memory") for b in json.load(open(remote))["endpoints"]],
    "exit_codes": {"smoke_bench": int(bench_rc), "gpu_report": int(gr_rc)},
    "throughput_tok_s": [b.get("output_throughput") for b in bench],
}
json.dump(summary, open(f"{out}/summary.json", "w"), indent=1)
print(json.dumps(summary, indent=1))
ok = (int(hc_gpu) == 0 and int(hc_cpu) == 1 and ref > 0 and abs(eng - ref) <= 0.05 * ref and int(gr_rc) == 0)
print("GPU TRUTH:", "OK" if ok else "FAILED")
sys.exit(0 if ok else 1)
PY
rc=$?
tar -C "$OUT" -czf "$OUT/fixtures.tar.gz" fixtures && rm -rf "$OUT/fixtures"
log "done in $(( $(date +%s) - t0 ))s, rc=$rc"
exit $rc
