"""pyinfra/deploy.py verifies what roles/verify verifies (c430245, 716a59c, ea43bcc): on a gateway_hosts host the lab
gateway alone (site.yml's lab gateway play), and before any change it stops when the controller cannot reach what
verify checks (roles/verify tasks/validate.yml, stack.unreachable): a service on loopback only of a host reached
elsewhere, naming its setting. Real `pyinfra --dry` runs of an @local host (nothing is written)."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

pytestmark = pytest.mark.unit
ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
MASTER = "sk-verify" + secrets.token_hex(8)


def _dry(tmp: Path, common: dict[str, Any], groups: dict[str, Any]) -> subprocess.CompletedProcess[str]:
    inventory = tmp / "inventory" / "hosts.yml"
    inventory.parent.mkdir(exist_ok=True)
    inventory.write_text(yaml.safe_dump({"all": {"vars": {
        "vault_gateway_master_key": MASTER, "docker_manage_service": False, "docker_manage_daemon_json": False,
        "inference_stack_dir": str(tmp / "opt"), "verify_reports_dir": str(tmp / "reports"), **common},
        "children": groups}}))
    return subprocess.run([str(BIN / "pyinfra"), "pyinfra/inventory.py", "pyinfra/deploy.py", "--limit", "@local",
                           "--dry", "--json"], cwd=ROOT, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "GIK_INVENTORY": str(inventory), "PATH": f"{BIN}:{os.environ['PATH']}"})


def test_a_lab_gateway_host_verifies_the_lab_gateway(tmp_path: Path) -> None:
    r = _dry(tmp_path, {}, {
        "gpu_hosts": {"hosts": {"up1": {"ansible_host": "10.254.0.1", "inference_stack_bind_address": "0.0.0.0",
                                        "inference_stack_engines": ["llamacpp"]}}},
        "gateway_hosts": {"hosts": {"solo": {"ansible_connection": "local", "gateway_bind_address": "127.0.0.1"}}}})
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    names = [op["name"] for op in json.loads(r.stdout)["plan"]]
    assert "Verify the lab gateway from the controller (healthcheck)" in names, names
    assert "Verify the endpoints from the controller (healthcheck, smoke-bench)" not in names, names
    assert MASTER not in r.stdout + r.stderr and not (tmp_path / "opt").exists()


@pytest.mark.parametrize(("host", "setting"), [
    # engines on loopback, the host reached at its lab address: verify could not reach them
    ({"inference_stack_bind_address": "127.0.0.1"}, "inference_stack_bind_address"),
    # its own gateway on loopback (engines published beyond it with a key)
    ({"inference_stack_bind_address": "0.0.0.0", "vault_llamacpp_api_key": "sk-l", "gateway_enabled": True,
      "gateway_bind_address": "127.0.0.1"}, "gateway_bind_address"),
])
def test_what_verify_cannot_reach_stops_before_any_change(tmp_path: Path, host: dict[str, Any],
                                                          setting: str) -> None:
    groups = {"gpu_hosts": {"hosts": {"gpu1": {"ansible_connection": "local", "ansible_host": "10.254.0.3",
                                               "inference_stack_engines": ["llamacpp"], "inference_stack_gpu": False,
                                               **host}}}}
    r = _dry(tmp_path, {}, groups)
    assert r.returncode == 2, r.stdout[-2000:] + r.stderr[-2000:]
    line = next(x for x in r.stderr.splitlines() if "pyinfra/deploy.py:" in x)
    assert setting in line and "10.254.0.3" in line and "--data gik_verify=false" in line, line
    assert "nothing was changed" in line and "Traceback" not in r.stderr and MASTER not in r.stderr
    groups["gpu_hosts"]["hosts"]["gpu1"]["gik_verify"] = False  # the lab's choice: deploy, verify elsewhere
    r = _dry(tmp_path, {}, groups)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    names = [op["name"] for op in json.loads(r.stdout)["plan"]]
    assert not [n for n in names if n.startswith("Verify")], names
