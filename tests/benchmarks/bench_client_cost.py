"""What does the benchmark client itself cost? smoke-bench vs `vllm bench serve` against a static SSE server.

The server answers every streamed completion at once with the same pre-built body (N chunks shaped like
vLLM's, a usage chunk, ``data: [DONE]``): nginx from Debian when installed (one worker, the body a static file
served for POST through ``error_page 405 =200``), else tests/doubles/loaded_server.py in static mode. So the
time each tool takes is its own: HTTP client, SSE parsing, per-chunk bookkeeping. Printed per tool: benchmark
time (the tool's own ``duration``), chunks per second of benchmark time, process CPU (user+sys of the child),
start-up (``--help`` wall time), and smoke-bench's ratio to vLLM's chunk rate (goal >= 1.0, aim 1.5).
No timed assertion.

    python tests/benchmarks/bench_client_cost.py [--requests 4000] [--chunks 256] [--concurrency 16]
"""

from __future__ import annotations

import argparse
import json
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from compare_peers import HF_DIR, OFFLINE, VLLM_VENV, Timed, timed  # the shared harness

HERE = Path(__file__).resolve().parent
VLLM = VLLM_VENV / "bin" / "vllm"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def sse_body(chunks: int) -> bytes:
    """A vLLM /v1/completions stream: one text chunk per token, the usage chunk, [DONE]."""
    out = []
    for i in range(chunks):
        ev = {"id": "cmpl-0123456789abcdef", "object": "text_completion", "created": 1700000000,
              "model": "smollm2:135m", "choices": [{"index": 0, "text": f" tok{i}", "logprobs": None,
                                                     "finish_reason": None, "stop_reason": None}]}
        out.append(b"data: " + json.dumps(ev).encode() + b"\n\n")
    usage = {"id": "cmpl-0123456789abcdef", "object": "text_completion", "created": 1700000000,
             "model": "smollm2:135m", "choices": [],
             "usage": {"prompt_tokens": 16, "total_tokens": 16 + chunks, "completion_tokens": chunks}}
    out.append(b"data: " + json.dumps(usage).encode() + b"\n\ndata: [DONE]\n\n")
    return b"".join(out)


class StaticServer:
    def __init__(self, chunks: int, tmp: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        tmp.chmod(0o755)  # nginx's workers run as an unprivileged user
        root = tmp / "www"
        (root / "v1").mkdir(parents=True)
        (root / "v1" / "completions").write_bytes(sse_body(chunks))
        (root / "v1" / "models").write_text(json.dumps({"object": "list", "data": [{"id": "smollm2:135m"}]}))
        nginx = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)
        if nginx:
            conf = tmp / "nginx.conf"
            conf.write_text(f"""
worker_processes 1; daemon off; pid {tmp}/nginx.pid; error_log {tmp}/error.log;
events {{ worker_connections 4096; }}
http {{
  access_log off; keepalive_requests 1000000; keepalive_timeout 120;
  client_body_temp_path {tmp}/body; proxy_temp_path {tmp}/proxy; fastcgi_temp_path {tmp}/fcgi;
  uwsgi_temp_path {tmp}/uwsgi; scgi_temp_path {tmp}/scgi;
  server {{
    listen 127.0.0.1:{self.port}; root {root};
    location = /v1/models {{ default_type application/json; }}
    location = /v1/completions {{ default_type text/event-stream; error_page 405 =200 $uri; }}
  }}
}}
""")
            argv = [nginx, "-c", str(conf), "-p", str(tmp)]
            self.kind = "nginx"
        else:
            argv = [sys.executable, str(HERE.parent / "doubles" / "loaded_server.py"), "--port", str(self.port),
                    "--token-delay", "0", "--slots", "100000"]
            self.kind = "python static server (nginx not installed)"
        self.proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", self.port), 0.2).close()
                break
            except OSError:
                time.sleep(0.05)

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


def _timed(argv: list[str], env: dict[str, str] | None = None) -> tuple[Timed, float, float]:
    """compare_peers' measure: the tool's whole process tree, user+sys."""
    r = timed(argv, env=env)
    return r, r.wall_s, r.cpu_s


def startup(argv: list[str], runs: int = 3) -> float:
    best = float("inf")
    for _ in range(runs):
        t0 = time.perf_counter()
        subprocess.run(argv, capture_output=True, timeout=120)
        best = min(best, time.perf_counter() - t0)
    return best


def run(requests: int = 4000, chunks: int = 256, concurrency: int = 16, with_vllm: bool = True,
        vllm_startup: bool = True) -> dict[str, Any]:
    smoke = Path(sys.executable).parent / "smoke-bench"
    figures: dict[str, Any] = {"requests": requests, "chunks_per_request": chunks, "concurrency": concurrency}
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        server = StaticServer(chunks, tmp)
        figures["server"] = server.kind
        try:
            out = tmp / "smoke.json"
            r, wall, cpu = _timed([str(smoke), f"openai={server.url}", "--model", "smollm2:135m", "--api",
                                   "completions", "--num-prompts", str(requests), "--max-concurrency",
                                   str(concurrency), "--output-len", str(chunks), "--input-len", "16",
                                   "--no-gpu-sampling", "--json", str(out)])
            if r.rc != 0:
                raise SystemExit(f"smoke-bench failed: {r.output[-1500:]}")
            s = json.loads(out.read_text())["endpoints"][0]
            assert s["completed"] == requests, s["error_counts"]
            figures["smoke_bench"] = {"benchmark_s": s["duration"], "wall_s": wall, "cpu_s": cpu,
                                      "chunks_per_s": requests * chunks / s["duration"],
                                      "startup_s": startup([str(smoke), "--help"])}
            if with_vllm and VLLM.exists() and HF_DIR.exists():
                r, wall, cpu = _timed([str(VLLM), "bench", "serve", "--backend", "openai", "--base-url", server.url,
                                       "--endpoint", "/v1/completions", "--model", "smollm2:135m", "--tokenizer",
                                       str(HF_DIR), "--dataset-name", "random", "--random-input-len", "16",
                                       "--random-output-len", str(chunks), "--num-prompts", str(requests),
                                       "--max-concurrency", str(concurrency), "--disable-tqdm", "--save-result",
                                       "--result-dir", str(tmp), "--result-filename", "vllm.json"],
                                      OFFLINE)
                if r.rc != 0:
                    raise SystemExit(f"vllm bench serve failed: {r.output[-1500:]}")
                v = json.loads((tmp / "vllm.json").read_text())
                figures["vllm_bench"] = {"benchmark_s": v["duration"], "wall_s": wall, "cpu_s": cpu,
                                         "chunks_per_s": requests * chunks / v["duration"],
                                         "startup_s": startup([str(VLLM), "bench", "serve", "--help"], 1)
                                         if vllm_startup else float("nan")}
                ours, theirs = figures["smoke_bench"]["chunks_per_s"], figures["vllm_bench"]["chunks_per_s"]
                figures["ratio_to_vllm"] = ours / theirs
        finally:
            server.stop()
    print(f"client cost ({figures['server']}, {requests} requests x {chunks} chunks, concurrency {concurrency}):")
    for tool in ("vllm_bench", "smoke_bench"):
        if tool in figures:
            f = figures[tool]
            print(f"  {tool:<12} benchmark {f['benchmark_s']:7.2f} s  {f['chunks_per_s']:9.0f} chunks/s  "
                  f"process CPU {f['cpu_s']:6.2f} s  wall {f['wall_s']:6.2f} s  start-up {f['startup_s']:.2f} s")
    if "ratio_to_vllm" in figures:
        print(f"  smoke-bench chunk rate = {figures['ratio_to_vllm']:.2f}x vLLM's (goal >= 1.0, aim 1.5; "
              "start-up goal < 2 s)")
    return figures


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--requests", type=int, default=4000)
    p.add_argument("--chunks", type=int, default=256)
    p.add_argument("--concurrency", type=int, default=16)
    p.add_argument("--no-vllm", action="store_true")
    a = p.parse_args()
    run(a.requests, a.chunks, a.concurrency, not a.no_vllm)
