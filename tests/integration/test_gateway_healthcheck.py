"""healthcheck and smoke-bench know the gateway: the REAL LiteLLM proxy (the offline-built image
local/litellm:1.110.2, on the host network so that it reaches the session's engines on loopback) in front of the
session's real vLLM CPU server and real llama-server, plus one llama-server of its own that a test stops.

- a healthy gateway: liveness, readiness, a real completion through every route, each upstream healthy as the
  gateway reports it (GET /health), no key and a made-up key refused: exit 0;
- a route whose upstream is down: unhealthy, naming that upstream (host:port), exit 1;
- a gateway without a master key (it serves keyless requests): exit 1;
- smoke-bench through the gateway beside the upstream measured directly: the gateway's cost (added TTFT,
  throughput ratio) is a figure in its table and JSON.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from conftest import GGUF, LLAMA_SERVER, MODEL, Engine, _need, _start, _stop, free_port
from conftest import check_rows as rows
from conftest import run_healthcheck as run
from test_gateway import wait_live

pytestmark = pytest.mark.integration
IMAGE = os.environ.get("GIK_GATEWAY_IMAGE", "local/litellm:1.110.2")
BIN = Path(sys.executable).parent
LLAMA_ROUTE = "smollm2-llamacpp"
SPARE_ROUTE = "smollm2-spare"  # its llama-server is stopped by test_a_route_whose_upstream_is_down


@dataclass
class Gw:
    url: str
    key_file: Path | None
    container: str

    def logs(self) -> str:
        return subprocess.run(["docker", "logs", "--tail", "40", self.container], capture_output=True, text=True,
                              timeout=60).stdout[-4000:]


def _deployment(route: str, provider: str, url: str) -> dict[str, Any]:
    return {"model_name": route, "litellm_params": {"model": f"{provider}/{MODEL}", "api_base": f"{url}/v1",
                                                      "api_key": "none"}}


def _start_gateway(name: str, config: dict[str, Any], tmp: Path) -> tuple[str, str]:
    """``docker run`` the image with ``config``; returns (url, container). Waits for nothing."""
    cfg = tmp / f"{name}.yaml"
    cfg.write_text(json.dumps(config))  # JSON is YAML
    cfg.chmod(0o644)
    port = free_port()
    container = f"gik-e3-{name}-{os.getpid()}"
    # no --rm: a gateway that exits at start keeps its log for wait_live's message (the fixture removes it)
    r = subprocess.run(["docker", "run", "-d", "--name", container, "--network", "host",
                        "-v", f"{cfg}:/app/config.yaml:ro", IMAGE, "--config", "/app/config.yaml",
                        "--host", "127.0.0.1", "--port", str(port)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    return f"http://127.0.0.1:{port}", container


@pytest.fixture(scope="module")
def gateways(vllm_server: Engine, llamacpp_server: Engine, engine_logs: Path,
             tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Gw, Gw, Engine]]:
    """(the keyed gateway, one without a master key, the spare llama-server behind the keyed one's SPARE_ROUTE)."""
    if subprocess.run(["docker", "image", "inspect", IMAGE], capture_output=True, timeout=60).returncode != 0:
        pytest.fail(f"{IMAGE} is missing: run `bash tests/setup.sh` (compose/images/build.sh builds it)",
                    pytrace=False)
    _need(LLAMA_SERVER)
    tmp = tmp_path_factory.mktemp("gateway-e3")
    spare_port = free_port()
    spare = _start("spare", [str(LLAMA_SERVER), "-m", str(GGUF), "--alias", MODEL, "--host", "127.0.0.1",
                             "--port", str(spare_port), "-c", "1024", "-t", "1"],
                   f"http://127.0.0.1:{spare_port}", "/health", engine_logs, 120)
    key = "sk-e3-" + os.urandom(12).hex()
    key_file = tmp / "master_key"
    key_file.write_text(key + "\n")
    key_file.chmod(0o600)
    model_list = [_deployment(MODEL, "hosted_vllm", vllm_server.url),
                  _deployment(LLAMA_ROUTE, "openai", llamacpp_server.url),
                  _deployment(SPARE_ROUTE, "openai", spare.url)]
    started: list[Gw] = []
    try:
        for name, cfg, kf in (("keyed", {"model_list": model_list, "general_settings": {"master_key": key}},
                               key_file),
                              # LiteLLM >= 1.110 refuses to start without a master key (UnsafeMasterKeyError,
                              # litellm/proxy/auth/master_key_boot_check.py) unless general_settings
                              # dangerously_permit_weak_or_unset_master_key is true: the open gateway a lab could
                              # still run by that switch, which healthcheck must fail
                              ("open", {"model_list": model_list[1:2],
                                        "general_settings": {"dangerously_permit_weak_or_unset_master_key": True}},
                               None)):
            url, container = _start_gateway(name, cfg, tmp)
            started.append(Gw(url, kf, container))
        t0 = time.monotonic()
        for g in started:
            wait_live(g.url, g.container, g.logs, seconds=240)
        print(f"\ngateways ready in {time.monotonic() - t0:.1f} s", file=sys.stderr)
        yield started[0], started[1], spare
    finally:
        for g in started:
            subprocess.run(["docker", "rm", "-f", g.container], capture_output=True, timeout=120)
        _stop(spare)


def _check(gw: Gw, *extra: str) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    key = ["--api-key-file", f"gateway={gw.key_file}"] if gw.key_file else []
    r = run(f"gateway={gw.url}", *key, "--json", "--no-diagnose", "--timeout", "60", *extra)
    try:
        return r, json.loads(r.stdout)
    except ValueError:
        pytest.fail(f"healthcheck printed no JSON (exit {r.returncode}): {r.stderr[-2000:]}", pytrace=False)


def test_a_healthy_gateway(gateways: tuple[Gw, Gw, Engine], vllm_server: Engine, llamacpp_server: Engine,
                           monkeypatch: pytest.MonkeyPatch) -> None:
    gw, _, spare = gateways
    r, doc = _check(gw, "--model", MODEL)
    c = rows(doc)
    assert r.returncode == 0, json.dumps(c, indent=1) + r.stderr
    assert doc["endpoints"][0]["engine"] == "gateway" and doc["endpoints"][0]["version"] == "LiteLLM 1.110.2"
    assert c["liveness"]["reason"] == "GET /health/liveliness 200"
    assert sorted(doc["endpoints"][0]["models"]) == sorted([MODEL, LLAMA_ROUTE, SPARE_ROUTE])
    for route, upstream in ((MODEL, vllm_server), (LLAMA_ROUTE, llamacpp_server), (SPARE_ROUTE, spare)):
        row = c[f"route {route}"]  # a real completion through the route, naming the upstream that answered
        assert row["status"] == "pass" and f"from {upstream.url}/v1" in row["reason"], row
        where = upstream.url.removeprefix("http://")
        up = c[f"upstream {route} {where}"]
        assert up["status"] == "pass" and "healthy as the gateway reports it" in up["reason"], up
    assert c["auth"]["status"] == "pass" and "(401)" in c["auth"]["reason"]  # no key: refused
    assert c["wrong_key"]["status"] == "pass", c["wrong_key"]
    assert c["completion"]["status"] == c["stream"]["status"] == "pass"
    assert "gpu_residency" not in c  # the gateway holds no model
    key = gw.key_file.read_text().strip() if gw.key_file else ""
    assert key and key not in r.stdout + r.stderr
    # the same from the table: every row, one line per failure (none)
    # (on a pipe, with no COLUMNS: the table is as wide as its rows, "route smollm2-spare" on one line; run() adds
    # to this process's environment, where a CI worker may have COLUMNS=80)
    monkeypatch.delenv("COLUMNS", raising=False)
    # (--timeout 60 as _check gives: on CI's two shared cores the gateway answered GET /health after more than the
    # default 30 s once, in the CI run of 402dac0)
    t = run(f"gateway={gw.url}", "--api-key-file", f"gateway={gw.key_file}", "--no-diagnose", "--timeout", "60",
            "--model", MODEL)
    assert t.returncode == 0 and "all 1 endpoint(s) healthy" in t.stdout and f"route {SPARE_ROUTE}" in t.stdout


def test_a_bare_url_is_recognised_as_the_gateway(gateways: tuple[Gw, Gw, Engine]) -> None:
    gw = gateways[0]
    r = run(gw.url, "--api-key-file", f"gateway={gw.key_file}", "--json", "--no-diagnose", "--no-capabilities")
    doc = json.loads(r.stdout)
    assert doc["endpoints"][0]["engine"] == "gateway", r.stdout[-2000:]
    assert rows(doc)["detect"]["reason"] == "detected gateway"


def test_no_key_configured_is_refused_by_a_keyed_gateway(gateways: tuple[Gw, Gw, Engine]) -> None:
    gw = gateways[0]
    r, doc = _check(Gw(gw.url, None, gw.container))
    c = rows(doc)
    assert r.returncode == 1
    assert c["liveness"]["status"] == "pass" and c["readiness"]["status"] == "fail"
    assert "401" in c["readiness"]["reason"] and "No api key passed in" in c["readiness"]["reason"]


def test_a_gateway_that_serves_without_a_key_fails(gateways: tuple[Gw, Gw, Engine]) -> None:
    _, open_gw, _ = gateways
    r, doc = _check(open_gw)
    c = rows(doc)
    assert r.returncode == 1, json.dumps(c, indent=1)
    assert c[f"route {LLAMA_ROUTE}"]["status"] == "pass"  # it does serve...
    assert c["wrong_key"]["status"] == "fail" and "enforces no key" in c["wrong_key"]["reason"]  # ...to anyone
    assert f"UNHEALTHY gateway@{open_gw.url.removeprefix('http://')}: wrong_key" in \
        run(f"gateway={open_gw.url}", "--no-diagnose").stderr


def test_a_route_whose_upstream_is_down(gateways: tuple[Gw, Gw, Engine], llamacpp_server: Engine) -> None:
    gw, _, spare = gateways
    _stop(spare)  # the spare's llama-server is gone: its route has no live upstream
    where = spare.url.removeprefix("http://")
    r, doc = _check(gw, "--model", MODEL, "--no-capabilities")
    c = rows(doc)
    assert r.returncode == 1, json.dumps(c, indent=1)
    route, up = c[f"route {SPARE_ROUTE}"], c[f"upstream {SPARE_ROUTE} {where}"]
    assert route["status"] == "fail" and f"upstream openai/{MODEL} at {spare.url}/v1" in route["reason"], route
    assert up["status"] == "fail" and "unhealthy as the gateway reports it" in up["reason"], up
    assert where in up["reason"] and "Connect" in up["reason"]
    # the other routes and their upstreams stay healthy: one upstream's failure loses nothing else
    assert c[f"route {LLAMA_ROUTE}"]["status"] == "pass"
    assert c[f"upstream {LLAMA_ROUTE} {llamacpp_server.url.removeprefix('http://')}"]["status"] == "pass"
    assert doc["endpoints"][0]["healthy"] is False


def test_smoke_bench_measures_the_gateways_cost(gateways: tuple[Gw, Gw, Engine], llamacpp_server: Engine,
                                               tmp_path: Path, record_property: Any) -> None:
    """Through the gateway's llama.cpp route and llama-server directly, in one run: the gateway's added TTFT and
    throughput ratio are figures smoke-bench prints and saves (values printed here, not asserted)."""
    gw = gateways[0]
    out = tmp_path / "bench.json"
    r = subprocess.run([str(BIN / "smoke-bench"), f"gateway={gw.url}", f"llamacpp={llamacpp_server.url}",
                        "--api-key-file", f"gateway={gw.key_file}", "--model", f"gateway={LLAMA_ROUTE}",
                        "--model", f"llamacpp={MODEL}", "--num-prompts", "12", "--max-concurrency", "2",
                        "--input-len", "32", "--output-len", "16", "--no-gpu-sampling", "--json", str(out)],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "gateway cost" in r.stdout
    doc = json.loads(out.read_text())
    g = next(e for e in doc["endpoints"] if e["engine"] == "gateway")
    d = next(e for e in doc["endpoints"] if e["engine"] == "llamacpp")
    assert g["completed"] == d["completed"] == 12
    assert g["served_by"] == {f"{llamacpp_server.url}/v1": 12}  # who answered, from LiteLLM's header
    assert g["gateway_compared_with"] == d["label"]
    stats = g["gateway"]
    assert stats["added_ttft_ms"] == pytest.approx(g["median_ttft_ms"] - d["median_ttft_ms"], abs=0.01)
    assert stats["throughput_ratio"] == pytest.approx(g["output_throughput"] / d["output_throughput"], rel=1e-3)
    assert stats["retries"] == 0 and stats["overhead_ms_median"] > 0
    figure = (f"gateway cost (LiteLLM 1.110.2 in front of llama-server, 12 prompts, concurrency 2): median TTFT "
              f"{g['median_ttft_ms']:.1f} ms via the gateway vs {d['median_ttft_ms']:.1f} ms direct "
              f"(added {stats['added_ttft_ms']:+.1f} ms); output tok/s ratio {stats['throughput_ratio']:.3f}, req/s "
              f"ratio {stats['request_throughput_ratio']:.3f}; LiteLLM's own overhead median "
              f"{stats['overhead_ms_median']:.1f} ms")
    print("\n" + figure, file=sys.stderr)
    record_property("figure", figure)
