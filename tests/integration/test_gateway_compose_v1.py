"""The compose gateway service under Debian's docker-compose v1 (1.29, the compose of hosts that have no v2 plugin):
the real LiteLLM image (local/litellm:1.110.2) starts from compose/compose.yaml with its file secrets and rendered
config, answers liveness, refuses a request without the master key (401) and takes one with it; an empty master
key file stops it with the entrypoint's one line. (test_gateway.py runs the same service under compose v2.)"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from conftest import ROOT, free_port

from healthchecks import gateway

pytestmark = pytest.mark.integration
IMAGE = os.environ.get("GIK_GATEWAY_IMAGE", gateway.OFFLINE_IMAGE)
V1 = shutil.which("docker-compose")
CONFIG = """model_list:
- model_name: smollm2:135m
  litellm_params: {model: openai/smollm2:135m, api_base: "http://127.0.0.1:9/v1", api_key: none}
general_settings:
  master_key: os.environ/GATEWAY_MASTER_KEY
"""


@pytest.fixture
def project(tmp_path: Path) -> Iterator[dict]:
    if V1 is None:
        pytest.fail("Debian's docker-compose (v1) is missing: run `bash tests/setup.sh`", pytrace=False)
    if subprocess.run(["docker", "image", "inspect", IMAGE], capture_output=True, timeout=60).returncode != 0:
        pytest.fail(f"{IMAGE} is missing: run `bash tests/setup.sh`", pytrace=False)
    d = tmp_path / "proj"
    (d / "secrets").mkdir(parents=True)
    (d / "gateway").mkdir()
    shutil.copy(ROOT / "compose" / "compose.yaml", d / "compose.yaml")
    key = "sk-v1-" + os.urandom(12).hex()
    (d / "secrets" / "gateway_master_key").write_text(key + "\n")
    for name in ("hf_token", "vllm_api_key"):
        (d / "secrets" / name).write_text("")
    for f in (d / "secrets").iterdir():
        f.chmod(0o600)
    (d / "gateway" / "config.yaml").write_text(CONFIG)
    port = free_port()
    (d / ".env").write_text(f"COMPOSE_FILE=compose.yaml\nGATEWAY_IMAGE={IMAGE}\nGATEWAY_PORT={port}\n")
    cmd = [str(V1), "-p", f"gik-gwv1-{os.getpid()}", "--profile", "gateway"]
    try:
        yield {"dir": d, "cmd": cmd, "url": f"http://127.0.0.1:{port}", "key": key}
    finally:
        subprocess.run([*cmd, "down", "-v", "-t", "5"], cwd=d, capture_output=True, timeout=300)


def _logs(p: dict) -> str:
    return subprocess.run([*p["cmd"], "logs", "--tail", "20", "gateway"], cwd=p["dir"], capture_output=True,
                          text=True, timeout=60).stdout[-3000:]


def test_compose_v1_starts_the_gateway_with_its_key_and_stops_on_an_empty_one(project: dict) -> None:
    up = subprocess.run([*project["cmd"], "up", "-d", "gateway"], cwd=project["dir"], capture_output=True,
                        text=True, timeout=300)
    assert up.returncode == 0, up.stderr[-3000:]
    t0 = time.monotonic()
    while time.monotonic() - t0 < 240:
        try:
            if httpx.get(project["url"] + "/health/liveliness", timeout=3).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        time.sleep(1)
    else:
        pytest.fail(f"the gateway did not answer under compose v1:\n{_logs(project)}", pytrace=False)
    assert httpx.get(project["url"] + "/v1/models", timeout=30).status_code == 401
    ok = httpx.get(project["url"] + "/v1/models", timeout=30, headers={"Authorization": f"Bearer {project['key']}"})
    assert ok.status_code == 200 and [m["id"] for m in ok.json()["data"]] == ["smollm2:135m"], ok.text[:300]
    assert project["key"] not in _logs(project)

    # an empty master key file: the entrypoint refuses it (LiteLLM would serve without a key)
    (project["dir"] / "secrets" / "gateway_master_key").write_text("")
    again = subprocess.run([*project["cmd"], "up", "-d", "--force-recreate", "gateway"], cwd=project["dir"],
                           capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr[-3000:]
    t0 = time.monotonic()
    # (up to 180 s: the recreated container's start and entrypoint can take tens of seconds on CI's loaded cores)
    while "is empty" not in (logs := _logs(project)) and time.monotonic() - t0 < 180:
        time.sleep(1)
    assert "gateway_master_key" in logs and "is empty" in logs, logs
    with pytest.raises(httpx.HTTPError):
        httpx.get(project["url"] + "/health/liveliness", timeout=3).raise_for_status()
