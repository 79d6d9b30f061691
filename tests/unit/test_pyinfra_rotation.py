"""A rotated key reaches exactly the services that read it with no recreate step of pyinfra's own (the SecretMounts
fallback of 18c2252 is gone, as the roles' recreate tasks are since 86b39bd): the .env and gateway.env pyinfra renders
(the roles' bytes, test_pyinfra_render / test_pyinfra_gateway) carry each service's salted files digest, its
io.gpu-inference-kit.files-digest label, so compose's own config hash (what StackState reads on the host, its real
command against the kit's compose/ here) differs for exactly those services, and compose_up runs the role's plain
``up``, which recreates them and no other."""

from __future__ import annotations

import secrets
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.unit
ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "pyinfra"))

import gik_ops  # noqa: E402
import gik_settings as gs  # noqa: E402

ENGINES = ["vllm", "llamacpp", "ollama"]
SALT = secrets.token_hex(32)
BASE = {"inference_stack_engines": ENGINES, "inference_stack_gpu": False, "vault_vllm_api_key": "sk-v",
        "vault_llamacpp_api_key": "sk-l", "vault_hf_token": "hf_t", "gateway_enabled": True,
        "vault_gateway_master_key": "sk-master"}


def _hashes(tmp: Path, values: dict[str, Any]) -> dict[str, str]:
    """compose's config hash per service (StackState's own command and process()) for the project pyinfra renders
    with ``values``: .env, gateway.env, the gateway's config."""
    stack = tmp / "opt"
    compose = stack / "compose"
    (compose / "gateway").mkdir(parents=True, exist_ok=True)
    s = gs.load({**BASE, **values, "inference_stack_dir": str(stack)}, group_vars=tmp / "none", files_salt=SALT)
    for f in s.compose_files:
        if f.startswith("compose"):
            shutil.copy(gs.ROOT / "compose" / f, compose / f)
    g = gs.gateway(s)
    (compose / ".env").write_text(gs.render_env(s))
    (compose / "gateway.env").write_text(g.env)
    (compose / "gateway" / "config.yaml").write_text(g.config)
    services = [*s.services, gs.CATALOGUE["gateway"].compose_service]
    fact = gik_ops.StackState()
    opts = gik_ops.compose_options([".env", "gateway.env"], ["gateway"])
    r = subprocess.run(["bash", "-c", fact.command(directory=str(compose), project="gik-rotation-unit",
                                                   services=services, options=opts)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    state = fact.process(r.stdout.splitlines())
    assert set(state) == set(services) and all(len(row["hash"]) == 64 for row in state.values()), r.stdout
    return {name: row["hash"] for name, row in state.items()}


@pytest.fixture(scope="module", autouse=True)
def _compose() -> None:
    if shutil.which("docker") is None or subprocess.run(["docker", "compose", "version"],
                                                         capture_output=True).returncode != 0:
        pytest.fail("the docker compose CLI is part of the test environment (tests/setup.sh)")


@pytest.mark.parametrize(("change", "changed"), [
    ({"vault_vllm_api_key": "sk-v2"}, {"vllm", "gateway"}),  # vLLM's key: vLLM and the gateway that sends it
    ({"vault_llamacpp_api_key": "sk-l2"}, {"llamacpp", "gateway"}),
    ({"vault_gateway_master_key": "sk-master2"}, {"gateway"}),  # the gateway's own key: the gateway alone
    ({"gateway_num_retries": 7}, {"gateway"}),  # its config.yaml (a bind mount compose does not compare)
    ({"vault_vllm_api_key": "  sk-v\n"}, set()),  # the same key padded: the same files, nothing recreated
])
def test_a_changed_file_changes_the_config_hash_of_exactly_its_readers(
        tmp_path: Path, change: dict[str, Any], changed: set[str]) -> None:
    base = _hashes(tmp_path, {})  # (the same folder: the gateway's config bind mount is a path of the project)
    new = _hashes(tmp_path, change)
    assert {s for s in base if new[s] != base[s]} == changed


class _Host:
    def __init__(self, rows: dict[str, dict[str, str]]) -> None:
        self.rows = rows

    def get_fact(self, fact: type, **_: object) -> object:
        assert fact is gik_ops.StackState  # no other fact: nothing reads what the services mount
        return self.rows


class _State:
    is_executing = True


def _commands(monkeypatch: pytest.MonkeyPatch, stale: list[str], compose: str = "v2") -> list[str]:
    row = {"hash": "h", "image": "img", "image_id": "sha256:1", "status": "running", "container_image": "sha256:1",
           "container_hash": "h"}
    rows = {s: {**row, "hash": "new" if s in stale else "h"} for s in ("vllm", "llamacpp")}
    monkeypatch.setattr(gik_ops, "host", _Host(rows))
    monkeypatch.setattr(gik_ops, "state", _State())
    ops = gik_ops.compose_up._inner(directory="/opt/gik/compose", project="gik", services=["vllm", "llamacpp"],
                                    wait_timeout=900, pull="missing", host_name="h", compose=compose)
    return [str(c.get_raw_value()) for c in ops]


def test_the_operation_runs_the_roles_up_and_nothing_else(monkeypatch: pytest.MonkeyPatch) -> None:
    # a service whose digest changed: the role's bring-up (compose recreates that one), no --force-recreate
    assert _commands(monkeypatch, ["vllm"]) == [
        "cd /opt/gik/compose && docker compose -p gik up -d --pull missing --wait --wait-timeout 900 vllm llamacpp"]
    assert _commands(monkeypatch, ["vllm"], "v1") == [
        "cd /opt/gik/compose && docker-compose -p gik up -d vllm llamacpp && "
        "COMPOSE_PROJECT_NAME=gik bash wait-healthy.sh 900 vllm llamacpp"]
    assert _commands(monkeypatch, []) == []  # every service as rendered: no change
