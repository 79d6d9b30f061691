"""pyinfra on a host only in gateway_hosts (site.yml's lab gateway play: proxy, docker, gateway): it gets the
gateway and none of the engines' parts. `pyinfra pyinfra/inventory.py pyinfra/deploy.py --dry` on this machine as
such a host (ansible_connection local; --dry: nothing is changed, the plan is what the deploy would do): no image
tarball copied or loaded (the engines' images, roles/inference_stack's), no engine overlay, Dockerfile or build
script shipped (roles/gateway ships compose.yaml), no .env, no engines brought up."""

from __future__ import annotations

import io
import json
import os
import secrets
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.unit
ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def test_a_gateway_only_host_gets_no_engine_parts(tmp_path: Path) -> None:
    # an image tarball as `docker save` writes it (the deploy reads its manifest.json)
    tarball = tmp_path / "engine-image.tar"
    with tarfile.open(tarball, "w") as tar:
        manifest = json.dumps([{"Config": "0123abcd.json", "RepoTags": ["local/engine:test"], "Layers": []}]).encode()
        info = tarfile.TarInfo("manifest.json")
        info.size = len(manifest)
        tar.addfile(info, io.BytesIO(manifest))
    master = "sk-gwonly" + secrets.token_hex(8)
    inventory = tmp_path / "inventory" / "hosts.yml"
    inventory.parent.mkdir()
    inventory.write_text(yaml.safe_dump({"all": {
        "vars": {"vault_gateway_master_key": master, "docker_manage_service": False,
                 "docker_manage_daemon_json": False, "inference_stack_dir": str(tmp_path / "opt"),
                 "inference_stack_image_tarballs": [str(tarball)], "verify_reports_dir": str(tmp_path / "reports")},
        "children": {
            # an upstream the lab gateway routes to (not deployed here: --limit)
            "gpu_hosts": {"hosts": {"up1": {"ansible_host": "10.254.0.1", "inference_stack_bind_address": "0.0.0.0",
                                            "inference_stack_engines": ["llamacpp"]}}},
            "gateway_hosts": {"hosts": {"solo": {"ansible_connection": "local"}}}}}}))
    r = subprocess.run([str(BIN / "pyinfra"), "pyinfra/inventory.py", "pyinfra/deploy.py", "--limit", "@local",
                        "--dry", "--json"], cwd=ROOT, capture_output=True, text=True, timeout=300,
                       env={**os.environ, "GIK_INVENTORY": str(inventory), "PATH": f"{BIN}:{os.environ['PATH']}"})
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    planned = [op["name"] for op in json.loads(r.stdout)["plan"] if op["hosts_with_change"]]
    assert "Bring the gateway up and wait until healthy" in planned, planned
    assert "Ship compose/compose.yaml" in planned, planned
    engine_parts = [name for name in planned if tarball.name in name or "image tarball" in name
                    or (name.startswith("Ship compose/") and name not in ("Ship compose/compose.yaml",
                                                                           "Ship compose/wait-healthy.sh"))
                    or name in ("Render .env", "Bring the engines up and wait until healthy")]
    assert engine_parts == [], planned
    assert not (tmp_path / "opt").exists()  # --dry: nothing written
    assert master not in r.stdout + r.stderr
