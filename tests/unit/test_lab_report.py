"""lab-report's pure parts and bad input: a host whose files are broken still appears with why and never loses
another host's result; the gateway's routes; text from servers escaped; the console script's one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest

from healthchecks import lab_report as lr

pytestmark = pytest.mark.unit
BIN = Path(sys.executable).parent


def endpoint(name: str, engine: str, *checks: tuple[str, str, str], version: str = "") -> dict[str, Any]:
    rows = [{"name": n, "status": s, "latency_ms": 1.0, "reason": r} for n, s, r in checks]
    return {"name": name, "engine": engine, "url": f"http://10.0.0.1/{name}", "model": "m", "models": ["m"],
            "checks": rows, "diagnosis": None, "attempts": 1, "version": version or None,
            "healthy": all(s != "fail" for _, s, _ in checks)}


def write_host(root: Path, host: str, endpoints: list[dict[str, Any]] | None = None, **files: str) -> Path:
    d = root / host
    d.mkdir(parents=True, exist_ok=True)
    if endpoints is not None:
        (d / "healthcheck.json").write_text(json.dumps({"healthy": all(e["healthy"] for e in endpoints),
                                                        "endpoints": endpoints}))
    for name, text in files.items():
        (d / name.replace("_", ".")).write_text(text)
    return d


OK = ("liveness", "pass", "200"), ("completion", "pass", "4 tokens")


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN / "lab-report"), *args], capture_output=True, text=True, timeout=60)


def test_a_broken_host_file_never_loses_another_hosts_result(tmp_path: Path) -> None:
    write_host(tmp_path, "a", [endpoint("vllm", "vllm", *OK)])
    write_host(tmp_path, "b", host_json="{not json", healthcheck_json="[1, 2")
    write_host(tmp_path, "c", [endpoint("vllm", "vllm", *OK)], bench_json='"a string"')
    rep = lr.collect(tmp_path)
    hosts = {h.name: h for h in rep.hosts}
    assert hosts["a"].state == lr.HEALTHY
    assert hosts["b"].state == lr.NO_RESULTS and "host.json: not JSON" in hosts["b"].why
    assert "healthcheck.json: not JSON" in hosts["b"].why
    assert hosts["c"].state == lr.HEALTHY and hosts["c"].problems == ["bench.json: not a JSON object"]
    assert not rep.healthy


def test_failed_and_named_hosts_appear_with_why(tmp_path: Path) -> None:
    write_host(tmp_path, "a", [endpoint("vllm", "vllm", *OK)])
    rep = lr.collect(tmp_path, hosts=["a", "z"], failed={"y": "UNREACHABLE: ssh timed out", "a": "docker: boom"})
    hosts = {h.name: h for h in rep.hosts}
    assert list(hosts) == ["a", "y", "z"]
    assert hosts["y"].state == lr.UNHEALTHY and hosts["y"].why == "UNREACHABLE: ssh timed out"
    assert hosts["a"].state == lr.UNHEALTHY and hosts["a"].why == "docker: boom"
    assert hosts["a"].engines[0].healthy  # its own results stay beside the failure
    assert hosts["z"].state == lr.NO_RESULTS and "unreachable" in hosts["z"].why


def test_unhealthy_gpu_residency_memory_and_capacity(tmp_path: Path) -> None:
    write_host(tmp_path, "gpu1", [
        endpoint("vllm", "vllm", *OK, ("gpu_residency", "pass", "engine holds 71234 MiB on GPU 0"), version="0.11"),
        endpoint("ollama", "ollama", *OK, ("gpu_residency", "fail", "size_vram 0: on the CPU"))],
        bench_json=json.dumps({"endpoints": [
            {"label": "vllm", "gpu_memory": {"engine_peak_mib": {"0": 71234.0}, "note": None},
             "sweep": {"slo": {"ttft": 2000.0, "tpot": 100.0}, "attainment_required": 0.9, "highest_load_met": False,
                       "best": {"request_throughput": 3.5, "users": 12.25, "output_throughput": 410.0,
                                "offered": "4 req/s"}}},
            {"label": "ollama", "gpu_memory": {"engine_peak_mib": {}, "note": "no process found"},
             "sweep": {"best": None}}]}))
    rep = lr.collect(tmp_path)
    vllm, ollama = rep.hosts[0].engines
    assert vllm.healthy and vllm.gpu == "pass" and vllm.gpu_peak_mib == {"0": 71234.0}
    assert lr.capacity_text(vllm) == ("3.50 req/s, about 12.2 users, 410.0 output tok/s within ttft<=2000ms "
                                      "tpot<=100ms (90% of requests)")
    assert not ollama.healthy and ollama.why == "gpu_residency: size_vram 0: on the CPU"
    assert lr.capacity_text(ollama) == "no load met the SLOs" and ollama.gpu_note == "no process found"
    html = lr.page(rep)
    assert "GPU 0: 71234 MiB" in html and "NOT on the GPU" in html


def test_verify_failures_after_healthcheck_make_the_host_unhealthy(tmp_path: Path) -> None:
    """host.json's failures (roles/verify: smoke-bench or gpu-report exited non-zero) beside a healthy healthcheck;
    healthcheck that could not run (no healthcheck.json) is the host's why."""
    write_host(tmp_path, "a", [endpoint("vllm", "vllm", *OK)], host_json=json.dumps(
        {"verified": True, "failures": ["gpu-report: no GPU memory held by vllm: the engine serves from the CPU"]}))
    write_host(tmp_path, "b", host_json=json.dumps({"verified": True, "why": "healthcheck exited 2: bad --model"}))
    a, b = lr.collect(tmp_path).hosts
    assert a.state == lr.UNHEALTHY and a.why == "gpu-report: no GPU memory held by vllm: the engine serves from the CPU"
    assert b.state == lr.UNHEALTHY and b.why == "healthcheck exited 2: bad --model"
    root = ET.fromstring(lr.junit_xml(lr.collect(tmp_path)).split("\n", 1)[1])
    failed = [(c.get("classname"), c.get("name")) for c in root.iter("testcase") if c.find("failure") is not None]
    assert failed == [("a", "verify"), ("b", "verify")]  # a's engine itself passed its checks


def test_gateway_routes_from_its_healthcheck_or_no_gateway(tmp_path: Path) -> None:
    """The gateway's rows as healthchecks/engines/gateway.py names them: route <model>, upstream <model> <host:port>."""
    write_host(tmp_path, "a", [endpoint("vllm", "vllm", *OK)])
    assert lr.to_json(lr.collect(tmp_path))["gateway"] is None
    assert "no gateway" in lr.page(lr.collect(tmp_path))
    write_host(tmp_path, "gw", [endpoint("gateway@10.0.0.9:4000", "gateway", *OK,
                                         ("route smollm2:135m", "pass", "answered by http://10.0.0.1:8000"),
                                         ("upstream smollm2:135m 10.0.0.2:8000", "fail", "connection refused"),
                                         ("wrong_key", "pass", "401"))])
    doc = lr.to_json(lr.collect(tmp_path))
    assert doc["gateway"]["endpoints"] == ["gw/gateway@10.0.0.9:4000"]
    assert [(r["kind"], r["route"], r["upstream"], r["status"]) for r in doc["gateway"]["routes"]] == [
        ("route", "smollm2:135m", "", "pass"), ("upstream", "smollm2:135m", "10.0.0.2:8000", "fail")]
    html = lr.page(lr.collect(tmp_path))
    assert "no gateway" not in html and "10.0.0.2:8000" in html and "connection refused" in html


def test_server_text_is_escaped_in_html_and_junit(tmp_path: Path) -> None:
    evil = '<script>alert(1)</script>\x1b[31m"&'
    write_host(tmp_path, "a", [endpoint("vllm", "vllm", ("liveness", "fail", evil), version=evil)])
    rep = lr.collect(tmp_path)
    assert "<script" not in lr.page(rep)
    root = ET.fromstring(lr.junit_xml(rep).split("\n", 1)[1])  # parses: no raw control character
    failure = root.find("./testsuite/testcase/failure")
    assert failure is not None and "<script>" in failure.get("message", "") and "\\x1b" in failure.get("message", "")


def test_cli_writes_the_three_outputs_and_exit_codes(tmp_path: Path) -> None:
    write_host(tmp_path, "a", [endpoint("vllm", "vllm", *OK)])
    r = cli(str(tmp_path))
    assert r.returncode == 0, r.stderr
    for name in ("lab.html", "lab.json", "lab-junit.xml"):
        assert (tmp_path / name).is_file() and f"wrote {tmp_path / name}" in r.stdout
    assert not (tmp_path / "lab.html").is_dir()
    assert cli(str(tmp_path), "--host", "b").returncode == 1  # a named host without results fails the lab


@pytest.mark.parametrize(("args", "line"), [
    (["{d}/nope"], "lab-report: results folder {d}/nope does not exist"),
    (["{d}/file"], "lab-report: results folder {d}/file is not a directory"),
    (["{d}/empty"], "lab-report: no host results in {d}/empty"),
    (["{d}/empty", "--html", "{d}/x.txt"], "lab-report: --html {d}/x.txt: expected a file ending in .html or .htm"),
    (["{d}/empty", "--junit", "{d}/missing/j.xml"], "lab-report: --junit {d}/missing/j.xml: directory"),
    (["{d}/empty", "--failed", "hostonly"], "lab-report: error: argument --failed: 'hostonly': expected HOST=WHY"),
    (["{d}/empty", "--host", "../x"], "lab-report: error: argument --host: '../x' is not a host name"),
])
def test_cli_bad_input_is_one_line_exit_2(tmp_path: Path, args: list[str], line: str) -> None:
    (tmp_path / "file").write_text("x")
    (tmp_path / "empty").mkdir()
    r = cli(*[a.format(d=tmp_path) for a in args])
    assert r.returncode == 2, r.stdout + r.stderr
    assert len(r.stderr.splitlines()) == 1 and r.stderr.startswith(line.format(d=tmp_path)), r.stderr
    assert "Traceback" not in r.stderr


def test_cli_output_that_cannot_be_written_after_checks(tmp_path: Path) -> None:
    """A write that fails while writing (here: the target is /dev/full, a full disk) is one line, exit 2,
    naming the flag; the other outputs are still written."""
    write_host(tmp_path, "a", [endpoint("vllm", "vllm", *OK)])
    full = tmp_path / "full.json"
    full.symlink_to("/dev/full")
    r = cli(str(tmp_path), "--json", str(full))
    assert r.returncode == 2, r.stdout + r.stderr
    assert r.stderr.strip() == f"lab-report: --json {full}: cannot write: No space left on device"
    assert (tmp_path / "lab.html").is_file() and (tmp_path / "lab-junit.xml").is_file()
