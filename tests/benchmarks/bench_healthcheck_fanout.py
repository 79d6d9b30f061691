"""How long does checking N endpoints take, against the slowest single endpoint? Prints the figure.

N Ollama protocol doubles (each streams tokens with a per-token delay: 0.05 s is about the 20 tok/s the CPU
engines here reach, 0.01 s a fast GPU) run in a separate process; the
full check pass (liveness, readiness, completion, NDJSON stream, /v1 stream, /api/ps) is timed in-process
with check_all(), first for each endpoint alone, then for all N at once.

    python tests/benchmarks/bench_healthcheck_fanout.py [N]
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path

from healthchecks.check import Options, check_all
from healthchecks.endpoints.url import Endpoint

HERE = Path(__file__).resolve().parent
SERVER = r'''
import sys, time
sys.path.insert(0, sys.argv[1])
from doubles.ollama_double import serve
servers = [serve(models=["smollm2:135m"], token_delay=float(sys.argv[3])) for _ in range(int(sys.argv[2]))]
print(" ".join(str(s.server_address[1]) for s in servers), flush=True)
time.sleep(3600)
'''


def run(n: int = 50, token_delay: float = 0.05) -> dict[str, float]:
    argv = [sys.executable, "-c", SERVER, str(HERE.parent), str(n), str(token_delay)]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        ports = [int(p) for p in proc.stdout.readline().split()]
        eps = [Endpoint("ollama", f"http://127.0.0.1:{p}", "smollm2:135m", name=f"double-{i}", expect_gpu=True)
               for i, p in enumerate(ports)]
        opts = Options(timeout=30, diagnose=False)
        asyncio.run(check_all(eps[:1], opts))  # warm up imports and the first connection
        singles = []
        for ep in eps:
            t0 = time.perf_counter()
            reports = asyncio.run(check_all([ep], opts))
            singles.append(time.perf_counter() - t0)
            assert reports[0].healthy, reports[0].first_failure
        t0, c0 = time.perf_counter(), time.process_time()
        reports = asyncio.run(check_all(eps, opts))
        together, client_cpu = time.perf_counter() - t0, time.process_time() - c0
        assert all(r.healthy for r in reports)
    finally:
        proc.kill()
        proc.wait()
    slowest = max(singles)
    figures = {"endpoints": n, "token_delay_s": token_delay, "slowest_single_s": slowest,
               "median_single_s": sorted(singles)[n // 2], "all_at_once_s": together, "client_cpu_s": client_cpu,
               "ratio_to_slowest": together / slowest}
    print(f"healthcheck fan-out ({1 / token_delay:.0f} tok/s doubles): {n} endpoints in {together:.3f}s; "
          f"slowest single {slowest:.3f}s; ratio {together / slowest:.2f} (target <= 1.2); "
          f"client CPU {client_cpu:.3f}s on {os.cpu_count()} cores shared with the doubles")
    return figures


if __name__ == "__main__":
    for delay in (0.01, 0.05):
        run(int(sys.argv[1]) if len(sys.argv) > 1 else 50, delay)
