"""gpu_residency and per-engine GPU memory against real engine processes on this machine, with the nvidia-smi
double standing in for the GPU (tests/doubles/nvidia_smi_double.py answers with lines recorded on an H100,
listing the processes a test names as compute apps). The real H100 run is tests/gpu/engine_gpu_truth.sh."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import Engine, free_port, wait_http

from healthchecks.engines import ENGINES
from healthchecks.gpu import residency

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
FALLBACK_LOG = ROOT / "tests" / "fixtures" / "gpu" / "h100-two-servers" / "cpu-server-head.log"


@pytest.fixture(scope="module")
def smi_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from doubles.nvidia_smi_double import install

    d = tmp_path_factory.mktemp("nvsmi")
    install(d)
    return d


def _env(smi_dir: Path | None, pids: str) -> dict[str, str]:
    path = os.environ.get("PATH", "")
    return {**os.environ, "PATH": f"{smi_dir}:{path}" if smi_dir else path, "NVSMI_DOUBLE_PIDS": pids}


def _pid(engine: Engine) -> int:
    assert engine.proc is not None
    return engine.proc.pid


def healthcheck(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    # --timeout 90: the session's engines are shared with the load tests on CI's two cores, where a request once took
    # longer than the default 30 s (the CI run of a1fef5c: llama.cpp "unhealthy"); residency, not latency, is tested
    return subprocess.run([str(BIN / "healthcheck"), *args, "--no-diagnose", "--json", "--timeout", "90"],
                          capture_output=True, text=True, timeout=600, env=env)


def residency_row(stdout: str) -> dict[str, object] | None:
    checks = json.loads(stdout)["endpoints"][0]["checks"]
    return next((c for c in checks if c["name"] == "gpu_residency"), None)


def test_engine_holding_gpu_memory_passes(llamacpp_server: Engine, smi_dir: Path) -> None:
    r = healthcheck(f"llamacpp={llamacpp_server.url}", "--expect-gpu",
                    env=_env(smi_dir, f"{_pid(llamacpp_server)}:3142"))
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr
    row = residency_row(r.stdout)
    assert row and row["status"] == "pass"
    assert f"process {_pid(llamacpp_server)} (llama-server) holds GPU 0: 3142 MiB" in str(row["reason"])


def test_engine_on_the_cpu_fails_with_expect_gpu_and_warns_without(llamacpp_server: Engine, smi_dir: Path) -> None:
    other = os.getpid()  # the GPU is busy, but with somebody else's process: the device total is not ours
    r = healthcheck(f"llamacpp={llamacpp_server.url}", "--expect-gpu", env=_env(smi_dir, f"{other}:3142"))
    assert r.returncode == 1
    row = residency_row(r.stdout)
    assert row and row["status"] == "fail" and "holds no GPU memory" in str(row["reason"])
    assert "serves from the CPU" in str(row["reason"])
    r = healthcheck(f"llamacpp={llamacpp_server.url}", env=_env(smi_dir, f"{other}:3142"))
    assert r.returncode == 0 and (residency_row(r.stdout) or {}).get("status") == "warn"
    r = healthcheck(f"llamacpp={llamacpp_server.url}", "--no-expect-gpu", env=_env(smi_dir, ""))
    assert r.returncode == 0 and (residency_row(r.stdout) or {}).get("status") == "pass"


def test_without_nvidia_smi_nothing_is_claimed(llamacpp_server: Engine) -> None:
    env = _env(None, "")
    env["PATH"] = ":".join(p for p in env["PATH"].split(":") if not (Path(p) / "nvidia-smi").exists())
    r = healthcheck(f"llamacpp={llamacpp_server.url}", env=env)
    assert r.returncode == 0 and residency_row(r.stdout) is None  # no GPU asked for, none to see: no row
    r = healthcheck(f"llamacpp={llamacpp_server.url}", "--expect-gpu", env=env)
    row = residency_row(r.stdout)
    assert row and row["status"] == "warn" and "cannot verify GPU residency" in str(row["reason"])
    assert "no nvidia-smi" in str(row["reason"])


def test_vllm_gpu_memory_held_by_its_engine_core_child_counts(vllm_server: Engine, smi_dir: Path) -> None:
    """vLLM's GPU memory belongs to its EngineCore child process, not the API server on the port."""
    children = residency.descendants(_pid(vllm_server)) - {_pid(vllm_server)}
    assert children, "vLLM runs its engine core in a child process"
    child = max(children)
    r = healthcheck(f"vllm={vllm_server.url}", "--expect-gpu", env=_env(smi_dir, f"{child}:20480"))
    assert r.returncode == 0, r.stdout[-2000:]
    assert "holds GPU 0: 20480 MiB" in str((residency_row(r.stdout) or {}).get("reason"))


@pytest.fixture
def fallback_server(tmp_path: Path) -> Iterator[tuple[int, subprocess.Popen[bytes]]]:
    """A process that logged llama.cpp's recorded CPU fallback to its stdout file, then listens on a port."""
    port = free_port()
    log = (tmp_path / "server.log").open("wb")
    code = (f"import sys,http.server; sys.stdout.write(open({str(FALLBACK_LOG)!r}).read()); sys.stdout.flush(); "
            f"http.server.HTTPServer(('127.0.0.1', {port}), http.server.BaseHTTPRequestHandler).serve_forever()")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=log, stderr=subprocess.STDOUT)
    assert wait_http(f"http://127.0.0.1:{port}/", 20), "the stand-in server did not start"
    yield port, proc
    proc.kill()
    proc.wait()


def test_cpu_fallback_verdict_names_the_cause_from_the_engines_own_log(
        fallback_server: tuple[int, subprocess.Popen[bytes]], smi_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    port, proc = fallback_server
    monkeypatch.setenv("PATH", f"{smi_dir}:{os.environ['PATH']}")
    monkeypatch.setenv("NVSMI_DOUBLE_PIDS", f"{os.getpid()}:500")
    found = residency.engine_processes("127.0.0.1", port)
    assert isinstance(found, residency.EngineProcesses) and proc.pid in found.pids
    verdict = residency.verdict(ENGINES["llamacpp"].signatures, "127.0.0.1", port, expect_gpu=True)
    assert verdict is not None and verdict[0] == "fail"
    assert "llama.cpp fell back to the CPU" in verdict[1] and "server-cuda" in verdict[1]
    nobody = free_port()
    assert residency.engine_processes("127.0.0.1", nobody) == (
        f"no process on this machine is seen listening on port {nobody}")
    assert "another machine" in str(residency.engine_processes("gpu01.lab.example", 8000))


def test_smoke_bench_reports_the_engines_own_memory(llamacpp_server: Engine, smi_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    r = subprocess.run([str(BIN / "smoke-bench"), f"llamacpp={llamacpp_server.url}", "--num-prompts", "3",
                        "--output-len", "4", "--timeout", "120", "--json", str(out)], capture_output=True, text=True,
                       timeout=600,
                       env=_env(smi_dir, f"{_pid(llamacpp_server)}:3142"))
    assert r.returncode == 0, r.stderr[-2000:]
    mem = json.loads(out.read_text())["endpoints"][0]["gpu_memory"]
    assert mem["engine_peak_mib"] == {"0": 3142.0} and mem["device_peak_mib"] == {"0": 3151.0}
    assert mem["source"] == f"process {_pid(llamacpp_server)} (llama-server)" and mem["note"] is None
    assert "GPU 0 engine peak (MiB)" in r.stdout and "GPU 0 device total peak (MiB)" in r.stdout
