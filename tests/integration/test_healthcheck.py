"""healthcheck against real engines (vLLM CPU, llama-server), the Ollama double, and every bad case."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from conftest import check_rows as checks
from conftest import free_port
from conftest import run_healthcheck as run

pytestmark = pytest.mark.integration
BIN = Path(sys.executable).parent
# the session's real engines are shared with the load tests of both xdist workers on CI's two cores, where a request
# to them took longer than healthcheck's default --timeout 30 (the CI run of a1fef5c, test_gpu_residency): the
# tests against them are about verdicts, not latency, so they allow 90 s a request
SHARED = ("--timeout", "90")


def test_all_real_engines_healthy_json(vllm_server, llamacpp_server, ollama_double) -> None:
    r = run(f"vllm={vllm_server.url}", f"llamacpp={llamacpp_server.url}", f"ollama={ollama_double.url}",
            "--model", "smollm2:135m", "--json", "--no-diagnose", *SHARED, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    doc = json.loads(r.stdout)
    assert doc["healthy"] is True
    by_engine = {e["engine"]: e for e in doc["endpoints"]}
    assert set(by_engine) == {"vllm", "llamacpp", "ollama"}
    for e in doc["endpoints"]:
        assert e["models"] == ["smollm2:135m"]
        names = {c["name"]: c for c in e["checks"]}
        for required in ("liveness", "readiness", "completion", "stream"):
            assert names[required]["status"] == "pass", names[required]
            assert names[required]["latency_ms"] >= 0
    vllm = {c["name"]: c for c in by_engine["vllm"]["checks"]}
    assert vllm["metrics"]["status"] == "pass" and "vllm:" in vllm["metrics"]["reason"]
    assert vllm["auth"]["status"] == "skip"
    ollama = {c["name"]: c for c in by_engine["ollama"]["checks"]}
    assert ollama["openai_v1"]["status"] == "pass"
    assert ollama["gpu_residency"]["status"] == "pass" and "VRAM" in ollama["gpu_residency"]["reason"]
    assert "NDJSON" in ollama["stream"]["reason"]


def test_bare_url_engine_detected_by_probing(vllm_server, llamacpp_server, ollama_double) -> None:
    r = run(vllm_server.url, llamacpp_server.url, ollama_double.url, "--json", "--no-diagnose", *SHARED, timeout=600)
    assert r.returncode == 0, r.stderr
    assert [e["engine"] for e in json.loads(r.stdout)["endpoints"]] == ["vllm", "llamacpp", "ollama"]


def test_table_output_and_exit_zero(llamacpp_server) -> None:
    r = run(f"llamacpp={llamacpp_server.url}", "--no-diagnose", *SHARED, timeout=600)
    assert r.returncode == 0
    assert "all 1 endpoint(s) healthy" in r.stdout


def test_ollama_cpu_fallback_is_a_failure_on_gpu_hosts(ollama_double_cpu) -> None:
    r = run(f"ollama={ollama_double_cpu.url}", "--expect-gpu", "--json", "--no-diagnose")
    assert r.returncode == 1
    c = checks(json.loads(r.stdout))["gpu_residency"]
    assert c["status"] == "fail" and "size_vram 0" in c["reason"]
    # unknown hardware: a warning, still healthy; CPU host: fine
    assert run(f"ollama={ollama_double_cpu.url}", "--no-diagnose").returncode == 0
    r = run(f"ollama={ollama_double_cpu.url}", "--no-expect-gpu", "--json", "--no-diagnose")
    assert checks(json.loads(r.stdout))["gpu_residency"]["status"] == "pass"


def test_wrong_model_name(vllm_server, ollama_double) -> None:
    r = run(f"vllm={vllm_server.url}", f"ollama={ollama_double.url}", "--model", "llama3:70b", "--json",
            "--no-diagnose", *SHARED, timeout=600)
    assert r.returncode == 1
    for i in (0, 1):
        c = checks(json.loads(r.stdout), i)["readiness"]
        assert c["status"] == "fail" and "'llama3:70b' is not served" in c["reason"] and "smollm2:135m" in c["reason"]


def test_api_key_required_and_read_from_file(llamacpp_with_key) -> None:
    engine, key_file = llamacpp_with_key
    ok = run(f"llamacpp={engine.url}", "--api-key-file", str(key_file), "--json", "--no-diagnose", *SHARED,
             timeout=600)
    assert ok.returncode == 0, ok.stdout
    c = checks(json.loads(ok.stdout))["auth"]
    assert c["status"] == "pass" and "401" in c["reason"]
    assert key_file.read_text().strip() not in ok.stdout + ok.stderr
    # without the key the engine refuses every request: unhealthy, with the server's reason
    bad = run(f"llamacpp={engine.url}", "--json", "--no-diagnose", *SHARED, timeout=600)
    assert bad.returncode == 1
    assert "HTTP 401" in checks(json.loads(bad.stdout))["readiness"]["reason"]


def test_endpoint_without_auth_is_reported_when_a_key_is_configured(llamacpp_server, tmp_path) -> None:
    key = tmp_path / "key"
    key.write_text("sk-unused\n")
    r = run(f"llamacpp={llamacpp_server.url}", "--api-key-file", str(key), "--json", "--no-diagnose", *SHARED,
            timeout=600)
    assert r.returncode == 1
    c = checks(json.loads(r.stdout))["auth"]
    assert c["status"] == "fail" and "without the API key answered 200" in c["reason"]


# -- bad input: each a clear one-line reason, the right exit code, no traceback --------------------------
@pytest.mark.parametrize(
    ("args", "code", "needle"),
    [
        (["vllm=localhost:8000"], 2, "has no scheme"),
        (["vllm=http://"], 2, "has no host"),
        (["vllm=http://127.0.0.1:99999"], 2, "malformed"),
        (["tgi=http://127.0.0.1:8000"], 2, "unknown engine 'tgi'"),
        (["vllm=ftp://127.0.0.1:21"], 2, "scheme must be http or https"),
        (["--timeout", "0"], 2, "must be greater than 0"),
        (["--bogus-flag"], 2, "unrecognized arguments"),
    ],
)
def test_usage_errors(args: list[str], code: int, needle: str) -> None:
    r = run(*args)
    assert r.returncode == code
    assert needle in r.stderr
    assert "Traceback" not in r.stderr + r.stdout
    assert len(r.stderr.strip().splitlines()) == 1


def test_missing_and_unreadable_api_key_file(tmp_path: Path) -> None:
    r = run("vllm=http://127.0.0.1:9", "--api-key-file", str(tmp_path / "nope"))
    assert r.returncode == 2 and "cannot be read" in r.stderr and "Traceback" not in r.stderr
    d = tmp_path / "dir"
    d.mkdir()
    r = run("vllm=http://127.0.0.1:9", "--api-key-file", str(d))
    assert r.returncode == 2 and "cannot be read" in r.stderr
    empty = tmp_path / "empty"
    empty.write_text("")
    r = run("vllm=http://127.0.0.1:9", "--api-key-file", str(empty))
    assert r.returncode == 2 and "is empty" in r.stderr


@pytest.mark.parametrize(
    ("endpoint", "needle"),
    [
        ("vllm=http://127.0.0.1:{free}", "connection refused"),
        ("vllm=http://no-such-host.invalid:8000", "DNS lookup failed for host 'no-such-host.invalid'"),
        ("vllm=https://127.0.0.1:{faulty_port}/ok", "TLS error"),
        ("vllm={faulty}/hang", "read timeout"),
        ("vllm={faulty}/html502", "HTTP 502 with an HTML page (502 Bad Gateway)"),
        ("openai={faulty}/notjson", "invalid JSON"),
        ("openai={faulty}/truncated", "truncated JSON"),
        ("vllm={faulty}/cutstream", "closed mid-answer"),
        ("vllm={faulty}/nodone", "ended before data: [DONE]"),
        ("vllm={faulty}/empty", "empty answer"),
    ],
)
def test_server_faults_give_one_line_reasons(endpoint: str, needle: str, faulty_server: str) -> None:
    port = faulty_server.rsplit(":", 1)[1]
    ep = endpoint.format(free=free_port(), faulty=faulty_server, faulty_port=port)
    r = run(ep, "--timeout", "2", "--json", "--no-diagnose", timeout=60)
    assert r.returncode == 1, r.stdout + r.stderr
    doc = json.loads(r.stdout)
    reasons = [c["reason"] for c in doc["endpoints"][0]["checks"] if c["status"] == "fail"]
    assert any(needle in x for x in reasons), reasons
    assert all("\n" not in x for x in reasons)
    assert "Traceback" not in r.stderr
    # the human form names the failure in one UNHEALTHY line on stderr
    human = run(ep, "--timeout", "2", "--no-diagnose", timeout=60)
    assert human.returncode == 1
    assert any(line.startswith("UNHEALTHY") and needle in line for line in human.stderr.splitlines()), human.stderr


def test_wait_polls_until_deadline_then_fails(tmp_path: Path) -> None:
    url = f"vllm=http://127.0.0.1:{free_port()}"
    r = run(url, "--wait", "3", "--timeout", "1", "--json", "--no-diagnose", timeout=60)
    assert r.returncode == 1
    assert json.loads(r.stdout)["endpoints"][0]["attempts"] >= 2
    human = run(url, "--wait", "3", "--timeout", "1", "--no-diagnose", timeout=60)
    assert human.returncode == 1
    assert "retry in" in human.stderr  # progress lines when stderr is not a terminal


def test_wait_returns_once_an_engine_comes_up(ollama_double) -> None:
    """Start a double on a port after the waiter's first attempt failed: --wait must pick it up and exit 0."""
    import socket
    import subprocess

    from doubles.ollama_double import serve

    port = free_port()
    # the first attempt is seen, not assumed to come within a fixed 2 s (healthcheck's start-up can take longer on CI's
    # two loaded cores, and an attempt that already finds the engine proves nothing): a listener on the port answers
    # the first attempt's request 503 (that attempt fails; as a model still loading), then the double takes the port
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind(("127.0.0.1", port))
        probe.listen()
        probe.settimeout(120)
        proc = subprocess.Popen([str(BIN / "healthcheck"), f"ollama=http://127.0.0.1:{port}", "--wait", "30", "--json",
                                 "--no-diagnose"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            conn, _ = probe.accept()
            with conn:
                conn.settimeout(60)
                conn.recv(65536)
                conn.sendall(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        except OSError:
            proc.kill()
            raise
    server = serve(port=port, models=["smollm2:135m"])
    try:
        stdout, stderr = proc.communicate(timeout=120)
    finally:
        proc.kill()
        server.shutdown()
        server.server_close()
    assert proc.returncode == 0, stdout + stderr
    assert json.loads(stdout)["endpoints"][0]["attempts"] >= 2
