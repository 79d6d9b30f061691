"""compose/up.sh starts what the stack catalogue says (the engines and their companions), after compose-preflight
passed: the real compose-preflight and up.sh, with `docker` and `healthcheck` recording their argv instead of
starting engines (tests/e2e runs the real stack)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import free_port

from healthchecks import stack

pytestmark = pytest.mark.unit
ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


@pytest.fixture
def project(tmp_path: Path) -> dict[str, Path]:
    d = tmp_path / "compose"
    d.mkdir()
    for f in ("compose.yaml", "compose.gpu.yaml", "compose.cpu.yaml", "up.sh", "wait-healthy.sh"):
        shutil.copy(ROOT / "compose" / f, d / f)
    models = tmp_path / "models"
    cat = stack.load()
    env = [f"MODELS_DIR={models}", "COMPOSE_FILE=compose.yaml:compose.cpu.yaml"]
    for e in cat.engines.values():
        env.append(f"{e.port_setting.env}={free_port()}")
        if e.model_path_setting and e.model_path_setting.env:
            model = Path(str(e.model_path_setting.env_default).replace("/models", str(models), 1))
            model.parent.mkdir(parents=True, exist_ok=True)
            model.touch()
    (d / ".env").write_text("\n".join(env) + "\n")
    (d / "secrets").mkdir()
    for s in ("hf_token", "vllm_api_key"):
        (d / "secrets" / s).touch(mode=0o600)
    fake = tmp_path / "bin"
    fake.mkdir()
    log = tmp_path / "calls.log"
    for tool in ("docker", "healthcheck"):
        (fake / tool).write_text(f'#!/bin/sh\necho "{tool} $*" >>{log}\n')
        (fake / tool).chmod(0o755)
    (fake / "compose-preflight").symlink_to(BIN / "compose-preflight")
    return {"dir": d, "bin": fake, "log": log}


def up(project: dict[str, Path], *services: str) -> tuple[subprocess.CompletedProcess[str], list[str]]:
    env = {**os.environ, "GIK_BIN": str(project["bin"]), "PATH": f"{project['bin']}:{os.environ['PATH']}",
           "GIK_COMPOSE": "v2"}
    r = subprocess.run(["bash", str(project["dir"] / "up.sh"), *services], capture_output=True, text=True,
                       env=env, timeout=120)
    calls = project["log"].read_text().splitlines() if project["log"].exists() else []
    return r, calls


def test_up_starts_the_catalogues_engines_and_their_companions(project: dict[str, Path]) -> None:
    cat = stack.load()
    r, calls = up(project)
    assert r.returncode == 0, r.stderr
    assert f"docker compose up -d --wait --wait-timeout 1800 {' '.join(cat.services(cat.deployed))}" in calls, calls
    assert "ollama-models" in cat.services(cat.deployed)
    assert calls[-1] == f"healthcheck --compose {project['dir']} --wait 1800"
    project["log"].unlink()
    r, calls = up(project, "llamacpp")
    assert r.returncode == 0, r.stderr
    assert "docker compose up -d --wait --wait-timeout 1800 llamacpp" in calls, calls


def test_up_stops_before_compose_on_a_bad_setting(project: dict[str, Path]) -> None:
    with (project["dir"] / ".env").open("a") as f:
        f.write("VLLM_GPU_MEMORY_UTILIZATION=1.5\n")
    r, calls = up(project, "vllm")
    assert r.returncode == 1
    assert "VLLM_GPU_MEMORY_UTILIZATION='1.5' must be a fraction in (0, 1]" in r.stderr
    assert not [c for c in calls if " up " in c], calls
