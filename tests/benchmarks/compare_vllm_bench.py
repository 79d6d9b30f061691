"""smoke-bench vs `vllm bench serve` on the same real vLLM server and the same dataset; prints figures.

Method: one jsonl dataset; both tools use /v1/completions, max_tokens=OUT with ignore_eos (every request
streams exactly OUT tokens), the same concurrency and warm-up count, one after another, each run twice
(alternating) and the second pair compared. Client CPU is the tool process's user+sys time (rusage of
the child), divided by the streamed chunks (one per token here) x 1000.

    python tests/benchmarks/compare_vllm_bench.py URL HF_DIR [--num-prompts N] [--output-len N] [--concurrency C]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

CACHE = Path(os.environ.get("GIK_CACHE", Path.home() / ".cache" / "gik"))
TOPICS = ["GPU drivers", "container runtimes", "rolling updates", "model caches", "tensor parallelism",
          "KV caches", "air-gapped labs", "health checks", "token streaming", "batch scheduling"]


def make_dataset(path: Path, n: int) -> None:
    lines = [json.dumps({"prompt": f"Write a short note for a lab admin about {TOPICS[i % len(TOPICS)]}, "
                         f"item {i}, in plain words:"}) for i in range(n)]
    path.write_text("\n".join(lines) + "\n")


def _timed(argv: list[str], env: dict[str, str] | None = None) -> tuple[subprocess.CompletedProcess[str], float]:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    r = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=1800)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def run_vllm_bench(url: str, hf_dir: str, ds: Path, n: int, out_len: int, conc: int, tmp: Path,
                   tag: str) -> tuple[dict[str, Any], float]:
    vllm = CACHE / "venv-vllm" / "bin" / "vllm"
    argv = [str(vllm), "bench", "serve", "--backend", "openai", "--base-url", url, "--endpoint", "/v1/completions",
            "--model", "smollm2:135m", "--tokenizer", hf_dir, "--dataset-name", "custom", "--dataset-path", str(ds),
            "--skip-chat-template", "--num-prompts", str(n), "--custom-output-len", str(out_len), "--ignore-eos",
            "--max-concurrency", str(conc), "--num-warmups", "2", "--seed", "0",
            "--percentile-metrics", "ttft,tpot,itl,e2el", "--metric-percentiles", "50,90,99", "--disable-tqdm",
            "--save-result", "--result-dir", str(tmp), "--result-filename", f"vllm-{tag}.json"]
    r, cpu = _timed(argv, {**os.environ, "HF_HUB_OFFLINE": "1"})
    if r.returncode != 0:
        raise SystemExit(f"vllm bench serve failed: {r.stderr[-1500:]}")
    return json.loads((tmp / f"vllm-{tag}.json").read_text()), cpu


def run_smoke_bench(url: str, ds: Path, n: int, out_len: int, conc: int, tmp: Path,
                    tag: str) -> tuple[dict[str, Any], float]:
    exe = Path(sys.executable).parent / "smoke-bench"
    out = tmp / f"smoke-{tag}.json"
    argv = [str(exe), f"vllm={url}", "--model", "smollm2:135m", "--api", "completions", "--dataset", str(ds),
            "--num-prompts", str(n), "--output-len", str(out_len), "--ignore-eos", "--concurrency", str(conc),
            "--warmups", "2", "--json", str(out), "--no-gpu-sampling"]
    r, cpu = _timed(argv)
    if r.returncode != 0:
        raise SystemExit(f"smoke-bench failed: {r.stderr[-1500:]}")
    return json.loads(out.read_text())["endpoints"][0], cpu


KEYS = ["total_input_tokens", "total_output_tokens", "median_ttft_ms", "median_tpot_ms", "median_itl_ms",
        "median_e2el_ms", "output_throughput"]


def compare(url: str, hf_dir: str, n: int, out_len: int, conc: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        ds = tmp / "ds.jsonl"
        make_dataset(ds, n)
        run_vllm_bench(url, hf_dir, ds, n, out_len, conc, tmp, "warm")  # warm both paths first
        run_smoke_bench(url, ds, n, out_len, conc, tmp, "warm")
        v, v_cpu = run_vllm_bench(url, hf_dir, ds, n, out_len, conc, tmp, "run")
        s, s_cpu = run_smoke_bench(url, ds, n, out_len, conc, tmp, "run")
    rows = {k: (v.get(k), s.get(k)) for k in KEYS}
    chunks_v = v["total_output_tokens"]
    chunks_s = s["total_output_tokens"]
    result = {
        "rows": rows,
        "cpu_s_per_1000_chunks": {"vllm_bench": 1000 * v_cpu / max(chunks_v, 1),
                                  "smoke_bench": 1000 * s_cpu / max(chunks_s, 1)},
        "completed": (v["completed"], s["completed"]),
    }
    print(f"{'metric':<22}{'vllm bench serve':>18}{'smoke-bench':>14}{'diff %':>9}")
    for k, (a, b) in rows.items():
        diff = 100 * (b - a) / a if a else 0.0
        print(f"{k:<22}{a:>18.2f}{b:>14.2f}{diff:>+9.1f}")
    cpu = result["cpu_s_per_1000_chunks"]
    print(f"{'client CPU s/1000 chunks':<22}{cpu['vllm_bench']:>18.3f}{cpu['smoke_bench']:>14.3f}")
    return result


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("url")
    p.add_argument("hf_dir")
    p.add_argument("--num-prompts", type=int, default=32)
    p.add_argument("--output-len", type=int, default=32)
    p.add_argument("--concurrency", type=int, default=4)
    a = p.parse_args()
    compare(a.url, a.hf_dir, a.num_prompts, a.output_len, a.concurrency)


if __name__ == "__main__":
    main()
