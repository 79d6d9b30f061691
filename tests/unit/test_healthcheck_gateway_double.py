"""``healthcheck`` (the console script, as deployers and CI call it) against the LiteLLM double
(tests/doubles/litellm_double.py: the REAL LiteLLM 1.110.2 proxy's replies to every request healthcheck makes,
captured from a lab gateway configured by healthchecks/gateway.py with its Hugging Face Inference Providers
fallback, tests/fixtures/gateway/capture_lab.py).

- The HF fallback deployment carries ``model_info.disable_background_health_check``, so LiteLLM's ``GET /health``
  never lists it: its upstream row is a skip naming why, and a healthy gateway exits 0; a local upstream the
  gateway reports unhealthy still fails (exit 1).
- On a pipe (no terminal, no COLUMNS) the table is whole: one line per check, every reason uncut."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from doubles import litellm_double

from healthchecks.engines import gateway as gw
from healthchecks.protocols import Http
from healthchecks.verdicts import FAIL, PASS, SKIP

pytestmark = pytest.mark.unit
BIN = Path(sys.executable).parent
HF_ROW = "upstream acme/chat-7b@hf 127.0.0.1:8090"
LIVE_ROWS = ("upstream smollm2:135m 127.0.0.1:8080", "upstream smollm2:135m@live/llamacpp 127.0.0.1:8080")
DEAD_ROWS = ("upstream smollm2:dead 127.0.0.1:8000", "upstream smollm2:dead@dead/llamacpp 127.0.0.1:8000")


@pytest.fixture(scope="module")
def key_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    f = tmp_path_factory.mktemp("gw") / "gateway_master_key"
    f.write_text(litellm_double.MASTER_KEY + "\n")
    f.chmod(0o600)
    return f


@pytest.fixture(scope="module")
def healthy() -> Iterator[str]:
    """The lab gateway without its dead host: every local upstream up, the HF fallback behind them."""
    server = litellm_double.serve(without_dead=True)
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def with_dead() -> Iterator[str]:
    """The lab gateway as captured: one host's llama.cpp down, LiteLLM reports it unhealthy."""
    server = litellm_double.serve()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def healthcheck(url: str, key_file: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    """The console script on pipes, with no terminal width to go by (COLUMNS unset)."""
    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"}
    return subprocess.run([str(BIN / "healthcheck"), f"gateway={url}", "--api-key-file", f"gateway={key_file}",
                           "--no-diagnose", *argv], capture_output=True, text=True, timeout=120, env=env)


def rows(r: subprocess.CompletedProcess[str]) -> dict[str, dict[str, Any]]:
    assert "Traceback" not in r.stdout + r.stderr, r.stderr
    [ep] = json.loads(r.stdout)["endpoints"]
    return {c["name"]: c for c in ep["checks"]}


def test_hf_fallback_not_health_checked_is_a_skip_on_a_healthy_gateway(healthy: str, key_file: Path) -> None:
    r = healthcheck(healthy, key_file, "--json")
    c = rows(r)
    assert r.returncode == 0, json.dumps(c, indent=1)
    hf = c[HF_ROW]
    assert hf["status"] == SKIP, hf
    assert "not health-checked by the gateway" in hf["reason"] and "disable_background_health_check" in hf["reason"]
    assert c["route acme/chat-7b@hf"]["status"] == PASS  # the fallback itself answered a real completion
    for name in LIVE_ROWS:
        assert c[name]["status"] == PASS, c[name]
    assert not any(n.startswith(DEAD_ROWS) for n in c)


@pytest.fixture(scope="module")
def dead_json(with_dead: str, key_file: Path) -> subprocess.CompletedProcess[str]:
    return healthcheck(with_dead, key_file, "--json")


def test_a_local_upstream_reported_unhealthy_still_fails(dead_json: subprocess.CompletedProcess[str]) -> None:
    r = dead_json
    c = rows(r)
    assert r.returncode == 1
    for name in DEAD_ROWS:
        assert c[name]["status"] == FAIL and "unhealthy as the gateway reports it" in c[name]["reason"], c[name]
        assert "127.0.0.1:8000" in c[name]["reason"]
    assert c[HF_ROW]["status"] == SKIP and [n for n, x in c.items() if x["status"] == FAIL] == [
        "route smollm2:dead@dead/llamacpp", *DEAD_ROWS]  # the HF row is not among the failures


def test_table_on_a_pipe_has_every_row_whole(with_dead: str, key_file: Path,
                                             dead_json: subprocess.CompletedProcess[str]) -> None:
    """rich gives a console without a terminal 80 columns: the reasons and the long route names were folded over
    several lines of their cells (the integration test had to set COLUMNS=200)."""
    want = rows(dead_json)
    r = healthcheck(with_dead, key_file)
    assert r.returncode == 1 and "Traceback" not in r.stdout + r.stderr, r.stderr
    body = [line for line in r.stdout.splitlines() if line.startswith("│")]
    assert len(body) == len(want), r.stdout  # one line per check: nothing folded onto a second line
    for name, check in want.items():
        line = next((x for x in body if f"│ {name} " in x), None)
        assert line is not None, f"no line with the whole check name {name!r}:\n{r.stdout}"
        assert f"│ {check['status']} " in line and check["reason"] in line, f"{name}: {line}"
    assert f"gateway@127.0.0.1:{with_dead.rsplit(':', 1)[1]}" in body[0] and "LiteLLM 1.110.2" in body[0]


# -- the engine's reading, against the captured replies ----------------------------------------------------------
def test_model_info_marks_the_deployment_litellm_does_not_health_check() -> None:
    replies = litellm_double.load()
    deps = gw.parse_model_info(replies["GET /model/info"]["body"])
    assert [(d.route, d.id, d.health_checked) for d in deps] == [
        ("smollm2:135m", "live/llamacpp", True), ("smollm2:dead", "dead/llamacpp", True),
        ("smollm2:135m@live/llamacpp", "live/llamacpp#direct", True),
        ("smollm2:dead@dead/llamacpp", "dead/llamacpp#direct", True), ("acme/chat-7b@hf", "hf", False)]
    # what the skip rests on: LiteLLM's GET /health (background checks) names every deployment but that one
    states = gw.parse_health(replies["GET /health"]["body"])
    assert {s.id for s in states} == {d.id for d in deps if d.health_checked}


def _states(body: dict[str, Any]) -> dict[str, str]:
    """Each upstream row of ``function_steps``' upstream part, over one /model/info and one /health answer."""
    info = litellm_double.load()["GET /model/info"]["body"]

    async def run() -> dict[str, str]:
        def handler(request: httpx.Request) -> httpx.Response:
            return httpx.Response(200, json=body)

        async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
            http = Http("http://gw", 5.0, "sk-master", client)
            deps = gw.parse_model_info(info)
            routes = gw.Routes(sorted({d.route for d in deps}), deps)
            return {name: (await step())[0] for name, step in gw._upstream_steps(http, routes)}

    return asyncio.run(run())


def test_an_unchecked_deployment_that_health_does_list_is_read_as_listed() -> None:
    """Without background checks LiteLLM's GET /health probes every deployment (unless
    health_check_skip_disabled_background_models): then the HF deployment's state is the gateway's and is read."""
    body = litellm_double.load()["GET /health"]["body"]
    assert _states(body)[HF_ROW] == SKIP
    hf = {"model": "openai/acme/chat-7b", "api_base": "http://127.0.0.1:8090/v1", "model_id": "hf"}
    listed = {**body, "unhealthy_endpoints": [*body["unhealthy_endpoints"], {**hf, "error": "401 invalid token"}]}
    assert _states(listed)[HF_ROW] == FAIL
    listed = {**body, "healthy_endpoints": [*body["healthy_endpoints"], hf]}
    assert _states(listed)[HF_ROW] == PASS
    # a deployment LiteLLM does check but leaves out of its answer is still a failure
    missing = {**body, "healthy_endpoints": [e for e in body["healthy_endpoints"] if e["model_id"] != "live/llamacpp"]}
    assert _states(missing)[LIVE_ROWS[0]] == FAIL
