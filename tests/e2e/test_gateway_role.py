"""roles/gateway for real on this machine (Ansible, local connection, the offline-built LiteLLM image): the first run
deploys the compose service gateway with its rendered config and secret files, a second run changes nothing,
--check on the deployed host reports nothing to change, and the gateway it brought up refuses a request without its
key and lists the routes the catalogue gives with it. A bad gateway setting stops the run before any change,
naming the setting. (The engines themselves are tests/integration/test_gateway.py.)"""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from conftest import free_port

from healthchecks import gateway, stack

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
IMAGE = os.environ.get("GIK_GATEWAY_IMAGE", gateway.OFFLINE_IMAGE)
CAT = stack.load()
DIR = str(CAT.settings["dir"].ansible)
PROJECT_NAME = str(CAT.settings["project_name"].ansible)
PLAY = [{"name": "gateway", "hosts": "localhost", "connection": "local", "gather_facts": False, "become": False,
         "roles": ["gateway"]}]


def _run(playbook: Path, extra: dict[str, Any], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN / "ansible-playbook"), "-i", "localhost,", str(playbook), "-e", json.dumps(extra),
                           *args], cwd=ROOT, capture_output=True, text=True, timeout=900,
                          env={**os.environ, "ANSIBLE_FORCE_COLOR": "0", "ANSIBLE_ROLES_PATH": str(ROOT / "roles"),
                               "ANSIBLE_PYTHON_INTERPRETER": sys.executable})


def _changed(out: str) -> int:
    m = re.search(r"localhost\s*:\s*ok=\d+\s+changed=(\d+)", out)
    assert m, out[-3000:]
    return int(m.group(1))


@pytest.fixture(scope="module")
def deployed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, dict[str, Any], str]]:
    if subprocess.run(["docker", "image", "inspect", IMAGE], capture_output=True, timeout=60).returncode != 0:
        pytest.fail(f"{IMAGE} is missing: run `bash tests/setup.sh`", pytrace=False)
    tmp = tmp_path_factory.mktemp("gwrole")
    playbook = tmp / "play.yml"
    playbook.write_text(yaml.safe_dump(PLAY))
    key = "sk-role-" + os.urandom(10).hex()
    project = f"gik-gwrole-{os.getpid()}"
    extra: dict[str, Any] = {DIR: str(tmp / "stack"), PROJECT_NAME: project,
             "gateway_image": IMAGE, "gateway_port": free_port(), "vault_gateway_master_key": key,
             "vault_hf_token": "", "gateway_num_retries": 4}
    first = _run(playbook, extra)
    try:
        assert first.returncode == 0, first.stdout[-4000:]
        yield playbook, extra, first.stdout
    finally:
        subprocess.run(["docker", "compose", "-p", project, "down", "-v", "-t", "5"], capture_output=True,
                       timeout=300, cwd=tmp / "stack" / "compose")


def test_the_role_deploys_the_gateway_and_a_second_run_changes_nothing(
        deployed: tuple[Path, dict[str, Any], str]) -> None:
    playbook, extra, first = deployed
    assert _changed(first) > 0
    stack_dir = Path(extra[DIR])
    secrets = stack_dir / "secrets" / "gateway_master_key"
    assert secrets.read_text() == extra["vault_gateway_master_key"]
    assert oct(secrets.stat().st_mode & 0o777) == "0o400"
    cfg = yaml.safe_load((stack_dir / "compose" / "gateway" / "config.yaml").read_text())
    assert cfg["router_settings"]["num_retries"] == 4
    assert cfg == gateway.render(gateway.host_upstreams(CAT.deployed), gateway.Options(num_retries=4))
    assert extra["vault_gateway_master_key"] not in first
    second = _run(playbook, extra)
    assert second.returncode == 0 and _changed(second.stdout) == 0, second.stdout[-4000:]
    check = _run(playbook, extra, "--check")
    assert check.returncode == 0 and _changed(check.stdout) == 0, check.stdout[-4000:]


def test_the_deployed_gateway_wants_its_key(deployed: tuple[Path, dict[str, Any], str]) -> None:
    _, extra, _ = deployed
    url = f"http://127.0.0.1:{extra['gateway_port']}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if httpx.get(url + "/health/liveliness", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(1)
    assert httpx.get(url + "/v1/models", timeout=30).status_code == 401
    key = extra["vault_gateway_master_key"]
    r = httpx.get(url + "/v1/models", timeout=30, headers={"Authorization": f"Bearer {key}"})
    assert r.status_code == 200
    want = {d["model_name"] for d in gateway.render(gateway.host_upstreams(CAT.deployed))["model_list"]}
    assert {m["id"] for m in r.json()["data"]} == want


@pytest.mark.parametrize(("extra", "words"), [
    ({"gateway_routing_strategy": "random"}, "gateway_routing_strategy"),
    ({"gateway_cooldown_time": "soon"}, "gateway_cooldown_time"),
    ({"vault_gateway_master_key": "not-a-litellm-key"}, "gateway_master_key"),
])
def test_a_bad_setting_stops_before_any_change(tmp_path: Path, extra: dict[str, Any], words: str) -> None:
    playbook = tmp_path / "play.yml"
    playbook.write_text(yaml.safe_dump(PLAY))
    base: dict[str, Any] = {DIR: str(tmp_path / "stack"), "vault_gateway_master_key": "sk-x", **extra}
    r = _run(playbook, base)
    assert r.returncode != 0
    assert words in r.stdout, r.stdout[-3000:]
    assert not (tmp_path / "stack").exists(), "a change was made before the check"
    assert "not-a-litellm-key" not in r.stdout


def test_a_new_master_key_recreates_the_gateway_and_a_third_run_changes_nothing(
        deployed: tuple[Path, dict[str, Any], str]) -> None:
    """Key rotation (the files-digest label): the role run with a new master key recreates the gateway (the old key
    refused, the new one served) and the run after it changes nothing. It runs with hf_secret, which writes the same
    engine key files on an engine host, and a newline-terminated vault key (a `!vault |` block ends in one): both
    roles write the key as gik_key_text gives it, so neither rewrites the other's file on every run. --diff shows
    no key. (Runs last: the module's gateway keeps the new key.)"""
    playbook, extra, _ = deployed
    both = playbook.with_name("hf_secret_and_gateway.yml")
    both.write_text(yaml.safe_dump([{**PLAY[0], "roles": ["hf_secret", "gateway"]}]))
    old, new = extra["vault_gateway_master_key"], "sk-rotated-" + os.urandom(10).hex()
    vllm_key = "sk-vllm-" + os.urandom(8).hex()
    rotated = {**extra, "vault_gateway_master_key": new, "vault_vllm_api_key": vllm_key + "\n"}
    first = _run(both, rotated, "--diff")
    assert first.returncode == 0 and _changed(first.stdout) > 0, first.stdout[-4000:]
    assert new not in first.stdout and vllm_key not in first.stdout
    secrets = Path(extra[DIR]) / "secrets"
    assert (secrets / "vllm_api_key").read_text() == vllm_key
    url = f"http://127.0.0.1:{extra['gateway_port']}"
    deadline = time.monotonic() + 180
    codes: tuple[int, ...] = (0, 0)
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError):
            codes = tuple(httpx.get(url + "/v1/models", timeout=10, headers={"Authorization": f"Bearer {k}"})
                          .status_code for k in (old, new))
        # the old key refused (LiteLLM without a database answers an unknown sk- key 400, no key 401), the new served
        if codes[0] in (400, 401) and codes[1] == 200:
            break
        time.sleep(2)
    assert codes[0] in (400, 401) and codes[1] == 200, f"old key, new key: {codes}"
    second = _run(both, rotated)
    assert second.returncode == 0 and _changed(second.stdout) == 0, second.stdout[-4000:]
