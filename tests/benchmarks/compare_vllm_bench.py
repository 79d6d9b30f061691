"""smoke-bench vs `vllm bench serve` on the same real vLLM server and the same dataset; prints figures.

Method: one JSONL dataset (vLLM's ``custom``); both tools use /v1/completions, max_tokens=OUT with ignore_eos
(every request streams exactly OUT tokens), temperature 0, the same seed (so the same shuffled request order
and, for a request-rate run, the same arrival schedule), the same warm-up count, one tool after the other.
Two kinds of run: a concurrency run (``--max-concurrency C``, all at once) and a request-rate run
(``--request-rate R``, Poisson arrivals). Compared: token totals, the request order (per-request input
lengths in send order), the send schedule (start-time offsets), duration, throughputs and median latencies.
Client CPU is each tool's process-tree user+sys time per 1000 streamed chunks. The argv of both tools and the
CPU measurement are compare_peers.py's (one harness for both comparisons).

    python tests/benchmarks/compare_vllm_bench.py URL HF_DIR [--num-prompts N] [--output-len N]
        [--concurrency C] [--request-rate R]
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from compare_peers import OFFLINE, smoke_bench_argv, timed, vllm_bench_argv

TOPICS = ["GPU drivers", "container runtimes", "rolling updates", "model caches", "tensor parallelism",
          "KV caches", "air-gapped labs", "health checks", "token streaming", "batch scheduling"]
KEYS = ["completed", "total_input_tokens", "total_output_tokens", "duration", "request_throughput",
        "output_throughput", "median_ttft_ms", "median_tpot_ms", "median_itl_ms", "median_e2el_ms",
        "max_output_tokens_per_s", "max_concurrent_requests"]


def make_dataset(path: Path, n: int) -> None:
    """Prompts of different lengths, so that the request order shows in the per-request input lengths."""
    lines = [json.dumps({"prompt": f"Write a short note for a lab admin about {TOPICS[i % len(TOPICS)]}, "
                         f"item {i}, in plain words{', please' * (i % 7)}:"}) for i in range(n)]
    path.write_text("\n".join(lines) + "\n")


def load_args(conc: int | None, rate: float, seed: int) -> list[str]:
    out = ["--seed", str(seed), "--num-warmups", "2"]
    if conc:
        out += ["--max-concurrency", str(conc)]
    if math.isfinite(rate):
        out += ["--request-rate", str(rate)]
    return out


def run_vllm_bench(url: str, hf_dir: str, ds: Path, n: int, out_len: int, load: list[str], tmp: Path,
                   tag: str) -> tuple[dict[str, Any], float]:
    out = tmp / f"vllm-{tag}.json"
    r = timed([*vllm_bench_argv(url, ds, n, out_len, load, out, hf_dir=Path(hf_dir)), "--save-detailed"],
              env=OFFLINE)
    if r.rc != 0:
        raise SystemExit(f"vllm bench serve failed: {r.output[-1500:]}")
    return json.loads(out.read_text()), r.cpu_s


def run_smoke_bench(url: str, ds: Path, n: int, out_len: int, load: list[str], tmp: Path,
                    tag: str) -> tuple[dict[str, Any], float]:
    out = tmp / f"smoke-{tag}.json"
    r = timed(smoke_bench_argv(url, ds, n, out_len, load, out))
    if r.rc != 0:
        raise SystemExit(f"smoke-bench failed: {r.output[-1500:]}")
    return json.loads(out.read_text())["endpoints"][0], r.cpu_s


def _offsets(starts: list[float]) -> list[float]:
    return [s - min(starts) for s in starts]


def compare(url: str, hf_dir: str, n: int, out_len: int, conc: int | None = None, rate: float = math.inf,
            seed: int = 0) -> dict[str, Any]:
    load = load_args(conc, rate, seed)
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        ds = tmp / "ds.jsonl"
        make_dataset(ds, n)
        v, v_cpu = run_vllm_bench(url, hf_dir, ds, n, out_len, load, tmp, "run")
        s, s_cpu = run_smoke_bench(url, ds, n, out_len, load, tmp, "run")
    rows = {k: (v.get(k), s.get(k)) for k in KEYS}
    sched = [abs(a - b) for a, b in zip(_offsets(v["start_times"]), _offsets(s["start_times"]), strict=True)]
    result = {
        "load": f"concurrency {conc}" if conc else f"request rate {rate}",
        "rows": rows,
        "same_order": v["input_lens"] == s["input_lens"],
        "input_lens": (v["input_lens"][:8], s["input_lens"][:8]),
        "max_schedule_gap_ms": 1000 * max(sched) if math.isfinite(rate) else None,
        "expected_duration_s": n / rate if math.isfinite(rate) else None,
        "cpu_s_per_1000_chunks": {"vllm_bench": 1000 * v_cpu / max(v["total_output_tokens"], 1),
                                  "smoke_bench": 1000 * s_cpu / max(s["total_output_tokens"], 1)},
        "completed": (v["completed"], s["completed"]),
    }
    print(f"\n{result['load']}, {n} prompts x {out_len} tokens")
    print(f"{'metric':<26}{'vllm bench serve':>18}{'smoke-bench':>14}{'diff %':>9}")
    for k, (a, b) in rows.items():
        diff = 100 * (b - a) / a if a else 0.0
        print(f"{k:<26}{a:>18.2f}{b:>14.2f}{diff:>+9.1f}")
    print(f"{'same request order':<26}{result['same_order']!s:>18}")
    if result["max_schedule_gap_ms"] is not None:
        print(f"{'max send-time gap (ms)':<26}{result['max_schedule_gap_ms']:>18.1f}   "
              f"(both send the last request at N/R = {n / rate:.2f} s)")
    cpu = result["cpu_s_per_1000_chunks"]
    print(f"{'client CPU s/1000 chunks':<26}{cpu['vllm_bench']:>18.3f}{cpu['smoke_bench']:>14.3f}")
    return result


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("url")
    p.add_argument("hf_dir")
    p.add_argument("--num-prompts", type=int, default=32)
    p.add_argument("--output-len", type=int, default=32)
    p.add_argument("--concurrency", type=int, default=4)
    p.add_argument("--request-rate", type=float, default=2.0)
    a = p.parse_args()
    compare(a.url, a.hf_dir, a.num_prompts, a.output_len, conc=a.concurrency)
    compare(a.url, a.hf_dir, a.num_prompts, a.output_len, rate=a.request_rate)


if __name__ == "__main__":
    main()
