"""smoke-bench pacing and sweeps against a server whose latency rises with load (tests/doubles/loaded_server.py):
vLLM's schedule (duration = N/R + the last request's latency), the knee a sweep must find, concurrency sweeps
counting users, the --max-seconds budget, one report page; and results kept whatever one endpoint does."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from doubles.loaded_server import Running, start

pytestmark = pytest.mark.integration
BIN = Path(sys.executable).parent


def bench(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN / "smoke-bench"), *args], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "COLUMNS": "220"})


@pytest.fixture(scope="module")
def wide() -> Iterator[Running]:
    """Plenty of slots: latency does not depend on load (pacing tests)."""
    s = start(slots=64, token_delay=0.005)
    yield s
    s.stop()


@pytest.fixture(scope="module")
def four_slots() -> Iterator[Running]:
    """4 decode slots, 20 ms per token, 10 tokens: 0.18 s per request, capacity about 22 requests/s."""
    s = start(slots=4, token_delay=0.02, slowdown=0.0)
    yield s
    s.stop()


@pytest.mark.parametrize(("rate", "burstiness"), [(10.0, "1"), (10.0, "inf"), (20.0, "0.5")])
def test_pacing_is_vllms(wide: Running, tmp_path: Path, rate: float, burstiness: str,
                         capsys: pytest.CaptureFixture[str]) -> None:
    """The last request leaves at N/R and nothing sleeps after it: duration = N/R + its latency (within 2%)."""
    n, out = 40, tmp_path / "p.json"
    r = bench(f"openai={wide.url}", "--num-prompts", str(n), "--request-rate", str(rate), "--burstiness", burstiness,
              "--output-len", "8", "--input-len", "8", "--seed", "3", "--json", str(out), "--no-gpu-sampling")
    assert r.returncode == 0, r.stderr
    e = json.loads(out.read_text())["endpoints"][0]
    starts = e["start_times"]
    last = max(range(n), key=lambda i: starts[i])
    expected = n / rate + e["latencies"][last]
    with capsys.disabled():
        print(f"\npacing R={rate} B={burstiness}: duration {e['duration']:.3f}s, N/R + last latency {expected:.3f}s "
              f"({100 * (e['duration'] - expected) / expected:+.2f}%)")
    assert abs(e["duration"] - expected) / expected < 0.02
    if burstiness == "inf":  # constant gaps of 1/R
        ordered = sorted(starts)
        gaps = sorted(b - a for a, b in itertools.pairwise(ordered))
        assert gaps[len(gaps) // 2] == pytest.approx(1 / rate, abs=0.005)  # each send at its own time:
        assert ordered[-1] - ordered[0] == pytest.approx((n - 1) / rate, abs=0.03)  # jitter never accumulates
    assert e["request_rate"] == rate and e["completed"] == n and e["max_concurrent_requests"] >= 1


def test_rate_sweep_finds_the_knee(four_slots: Running, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out, png, page = tmp_path / "s.json", tmp_path / "s.png", tmp_path / "s.html"
    r = bench(f"openai={four_slots.url}", "--sweep", "--num-prompts", "30", "--sweep-points", "4", "--output-len", "10",
              "--input-len", "8", "--goodput", "ttft:100", "--json", str(out), "--plot", str(png), "--html", str(page),
              "--no-gpu-sampling")
    assert r.returncode == 0, r.stderr[-3000:]
    with capsys.disabled():
        print("\n" + r.stdout[-4000:])
    sw = json.loads(out.read_text())["endpoints"][0]["sweep"]
    pts = {p["kind"]: p for p in sw["points"]}
    sync, thr = pts["synchronous"], pts["throughput"]
    assert sync["meets"] and not thr["meets"]  # one at a time is fast; everything at once queues
    assert thr["p90_ttft_ms"] > 5 * sync["p90_ttft_ms"]
    assert 1.5 * sync["request_throughput"] < thr["request_throughput"] < 23  # capacity about 22 req/s
    best = sw["best"]
    assert best is not None and best["request_throughput"] > sync["request_throughput"]
    assert best["attainment"] >= 0.9 and best["request_throughput"] < thr["request_throughput"]
    assert re.search(r"serves (at least )?[\d.]+ req/s, about [\d.]+ concurrent users", r.stdout)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    html = page.read_text()
    assert "data:image/png;base64," in html and "How many users" in html and "Settings" in html
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", html) and "<script" not in html


def test_concurrency_sweep_counts_users(four_slots: Running, tmp_path: Path) -> None:
    """With 4 decode slots and a 100 ms TTFT target, 4 users are served; more queue."""
    out = tmp_path / "c.json"
    r = bench(f"openai={four_slots.url}", "--sweep", "--sweep-mode", "concurrency", "--sweep-points", "6",
              "--num-prompts", "32", "--output-len", "10", "--input-len", "8", "--goodput", "ttft:100", "--json",
              str(out), "--no-gpu-sampling")
    assert r.returncode == 0, r.stderr[-3000:]
    sw = json.loads(out.read_text())["endpoints"][0]["sweep"]
    best = sw["best"]
    assert best["concurrency"] == 4, [(p["offered"], p["attainment"]) for p in sw["points"]]
    assert 3.0 <= best["users"] <= 4.5
    assert four_slots.load.peak_running <= 4


def test_max_seconds_bounds_the_sweep(four_slots: Running, tmp_path: Path) -> None:
    out = tmp_path / "b.json"
    t0 = time.perf_counter()
    r = bench(f"openai={four_slots.url}", "--sweep", "--num-prompts", "200", "--output-len", "10", "--input-len", "8",
              "--max-seconds", "6", "--json", str(out), "--no-gpu-sampling")
    wall = time.perf_counter() - t0
    assert r.returncode == 0, r.stderr[-2000:]
    e = json.loads(out.read_text())["endpoints"][0]
    assert wall < 6 + 8  # the budget, plus start-up, warm-up and reports
    assert any(p["cut_short"] for p in e["sweep"]["points"]) and "not sent or cancelled" in r.stderr


def test_stricter_findings_are_warnings_not_failures(faulty_server: str, tmp_path: Path) -> None:
    """A stream that ends without [DONE] is a success by vLLM's rules: counted completed, reported as a
    warning."""
    out = tmp_path / "w.json"
    r = bench(f"vllm={faulty_server}/nodone", "--model", "m", "--num-prompts", "3", "--json", str(out),
              "--no-gpu-sampling")
    assert r.returncode == 0, r.stderr
    e = json.loads(out.read_text())["endpoints"][0]
    assert e["completed"] == 3 and e["failed"] == 0 and e["errors"] == ["", "", ""]
    assert e["warning_counts"] == {"stream ended without data: [DONE]": 3}
    assert "warning: 3 completed by vLLM's rules" in r.stderr


def test_an_endpoint_that_breaks_keeps_everyone_elses_result(wide: Running, faulty_server: str) -> None:
    """Whatever one endpoint raises, the others' results are kept (and its own reason is recorded)."""
    from healthchecks import bench as b
    from healthchecks.endpoints.url import parse_endpoint
    from healthchecks.workload import WorkloadSpec

    eps = [parse_endpoint(f"openai={wide.url}"), parse_endpoint(f"vllm={faulty_server}/cutstream"),
           parse_endpoint(f"openai={wide.url}")]
    eps = [e if e.engine != "vllm" else replace(e, model="m") for e in eps]
    cfg = b.BenchConfig(num_prompts=4, gpu_sampling=False, workload=WorkloadSpec(num_prompts=4, input_len=4,
                                                                                output_len=4))
    calls = []

    async def flaky(t: b.Target, c: b.BenchConfig, local: object, progress: object) -> b.EndpointResult:
        calls.append(t.ep.label)
        if len(calls) == 1:
            raise RuntimeError("a bug in one endpoint's run")
        return await b.run_endpoint(t, c, None)

    results = asyncio.run(b.run_all(eps, cfg, runner=flaky))
    assert len(results) == 3
    assert results[0].setup_error.startswith("RuntimeError: a bug") and results[0].metrics["failed"] == 4
    assert "closed mid-answer" in results[1].setup_error and results[1].metrics["failed"] == 4
    assert results[2].completed == 4
