"""pyinfra recreates exactly the services that mount a secret file the run rewrote, as roles/inference_stack does:
the map is compose's own (``compose config``: top-level ``secrets:`` name -> file, each service's ``secrets:``), read
on the host by the SecretMounts fact, never a hand-written table. Here the fact's own command runs against the kit's
compose/ with a .env rendered from the roles' template (the real compose CLI), and the derivation is checked on it:
a new vLLM key recreates vLLM alone (not llama.cpp, not vLLM's model check: --no-deps), a new llama.cpp key llama.cpp
alone, a new token the services that mount it. Before, every engine and its dependencies were recreated."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit
ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "pyinfra"))

import gik_ops  # noqa: E402
import gik_settings as gs  # noqa: E402

ENGINES = ["vllm", "llamacpp", "ollama"]


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    if shutil.which("docker") is None or subprocess.run(["docker", "compose", "version"],
                                                         capture_output=True).returncode != 0:
        pytest.fail("the docker compose CLI is part of the test environment (tests/setup.sh)")
    tmp = tmp_path_factory.mktemp("mounts")
    stack = tmp / "opt"
    compose = stack / "compose"
    compose.mkdir(parents=True)
    s = gs.load({"inference_stack_engines": ENGINES, "inference_stack_gpu": False, "inference_stack_dir": str(stack),
                 "vault_vllm_api_key": "sk-v", "vault_llamacpp_api_key": "sk-l", "vault_hf_token": "hf_t"},
                group_vars=tmp / "none")
    for f in s.compose_files:
        if f.startswith("compose"):
            shutil.copy(gs.ROOT / "compose" / f, compose / f)
    (compose / ".env").write_text(gs.render_env(s))
    (stack / "secrets").mkdir()
    for name, content in gik_ops.secret_files(s).items():
        (stack / "secrets" / name).write_text(content)
    return {"settings": s, "compose": compose, "secrets": stack / "secrets"}


def _fact(compose: Path, **kwargs: str) -> dict[str, list[str]] | None:
    """SecretMounts as pyinfra runs it on a host: its shell command, its output through its process()."""
    fact = gik_ops.SecretMounts()
    command = fact.command(directory=str(compose), project="gik-mounts-test", **kwargs)
    r = subprocess.run(["bash", "-c", command], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    return fact.process(r.stdout.splitlines())


def test_the_map_is_compose_config(project: dict[str, object]) -> None:
    compose, secrets = project["compose"], project["secrets"]
    assert isinstance(compose, Path) and isinstance(secrets, Path)
    mounts = _fact(compose)
    assert mounts is not None
    # compose config's own answer, read here independently of the fact's reduction
    doc = subprocess.run(["docker", "compose", "-p", "gik-mounts-test", "config", "--format", "json"], cwd=compose,
                         capture_output=True, text=True, check=True, timeout=120).stdout
    import json

    config = json.loads(doc)
    want = {svc: [config["secrets"][m["source"] if isinstance(m, dict) else m]["file"] for m in spec["secrets"]]
            for svc, spec in config["services"].items() if spec.get("secrets")}
    assert mounts == want
    assert mounts["vllm"] == [str(secrets / "hf_token"), str(secrets / "vllm_api_key")]
    assert mounts["llamacpp"] == [str(secrets / "llamacpp_api_key")]
    assert "ollama" not in mounts and "vllm-model-check" in mounts  # a dependency: never in services, --no-deps


@pytest.mark.parametrize(("changed", "recreated"), [
    (["vllm_api_key"], ["vllm"]),
    (["llamacpp_api_key"], ["llamacpp"]),
    (["hf_token"], ["vllm"]),
    (["hf_token", "llamacpp_api_key"], ["vllm", "llamacpp"]),
    ([], []),
])
def test_only_the_services_mounting_a_changed_file(project: dict[str, object], changed: list[str],
                                                   recreated: list[str]) -> None:
    s, compose = project["settings"], project["compose"]
    assert isinstance(s, gs.Settings) and isinstance(compose, Path)
    mounts = _fact(compose)
    assert mounts is not None
    # deploy.py's secret_files: <hf_secret_dir>/<name> of each rewritten file (a trailing / compares the same)
    files = [f"{s.secret_dir}/{name}" for name in changed]
    assert gik_ops.secret_recreates(mounts, files, s.services) == recreated
    assert gik_ops.secret_recreates(mounts, [f.replace("/secrets/", "/secrets//") for f in files], s.services) \
        == recreated


def test_the_gateway_profile_mounts_every_key(project: dict[str, object], tmp_path: Path) -> None:
    compose = project["compose"]
    assert isinstance(compose, Path)
    (compose / "gateway.env").write_text("COMPOSE_PROFILES=gateway\n")
    try:
        mounts = _fact(compose, options="--env-file .env --env-file gateway.env --profile gateway",
                       rendered="gateway.env")
    finally:
        (compose / "gateway.env").unlink()
    assert mounts is not None
    assert gik_ops.secret_recreates(mounts, [str(project["secrets"]) + "/vllm_api_key"], ["gateway"]) == ["gateway"]


def test_no_project_and_no_answer(project: dict[str, object], tmp_path: Path) -> None:
    assert _fact(tmp_path) == {}  # nothing rendered yet: the bring-up creates every service
    fact = gik_ops.SecretMounts()
    assert fact.process(["- unknown"]) is None  # no python3 on the host: deploy.py recreates every service


class _Host:
    """pyinfra's host as compose_up reads it: the facts of a project whose engines are up to date."""

    def __init__(self, mounts: dict[str, list[str]] | None) -> None:
        self.mounts = mounts

    def get_fact(self, fact: type, **_: object) -> object:
        if fact is gik_ops.SecretMounts:
            return self.mounts
        row = {"hash": "h", "image": "img", "image_id": "sha256:1", "status": "running",
               "container_image": "sha256:1", "container_hash": "h"}
        return {s: dict(row) for s in ("vllm", "llamacpp")}


class _State:
    is_executing = True


def _commands(monkeypatch: pytest.MonkeyPatch, mounts: dict[str, list[str]] | None, compose: str = "v2",
              **kwargs: object) -> list[str]:
    monkeypatch.setattr(gik_ops, "host", _Host(mounts))
    monkeypatch.setattr(gik_ops, "state", _State())
    ops = gik_ops.compose_up._inner(directory="/opt/gik/compose", project="gik", services=["vllm", "llamacpp"],
                                    wait_timeout=900, pull="missing", host_name="h", compose=compose, **kwargs)
    return [str(c.get_raw_value()) for c in ops]


def test_the_operation_recreates_only_those_with_the_roles_command(monkeypatch: pytest.MonkeyPatch) -> None:
    mounts = {"vllm": ["/opt/gik/secrets/hf_token", "/opt/gik/secrets/vllm_api_key"],
              "llamacpp": ["/opt/gik/secrets/llamacpp_api_key"]}
    changed = ["/opt/gik/secrets/vllm_api_key"]
    assert _commands(monkeypatch, mounts, secret_files=changed) == [
        "cd /opt/gik/compose && docker compose -p gik up -d --force-recreate --no-deps --pull never --wait "
        "--wait-timeout 900 vllm"]
    assert _commands(monkeypatch, mounts, compose="v1", secret_files=changed) == [
        "cd /opt/gik/compose && docker-compose -p gik up -d --force-recreate --no-deps vllm && "
        "COMPOSE_PROJECT_NAME=gik bash wait-healthy.sh 900 vllm"]
    assert _commands(monkeypatch, mounts, secret_files=[]) == []  # nothing rewritten, all up to date: no change
    # the host cannot say what they mount (no python3): every service, rather than one left on an old key
    assert _commands(monkeypatch, None, secret_files=changed)[0].endswith("--wait-timeout 900 vllm llamacpp")
