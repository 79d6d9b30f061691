"""compose/wait-healthy.sh (Compose v1's missing --wait, used by up.sh, the Ansible role and the pyinfra deploy)
against real containers on the real Docker engine, with docker-compose v1 and Compose v2: healthy and
healthcheck-less services pass; an unhealthy, an exited and a never-healthy container each fail by name."""

from __future__ import annotations

import os
import secrets
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.e2e

SCRIPT = Path(__file__).resolve().parents[2] / "compose" / "wait-healthy.sh"
BASE_IMAGE = "local/debian:bookworm"  # tests/setup.sh imports it (debootstrap)


def _svc(command: str, test: list[str] | None = None, **health: str) -> dict:
    svc: dict = {"image": BASE_IMAGE, "command": ["sh", "-c", command], "init": True}
    if test:
        # timeout 30s: one probe past it is a failure, and with retries 1 "ok" turns unhealthy; Docker's exec of
        # `true` can take seconds on CI's two loaded cores (a 10-40x slowdown), and no test here is about a slow probe
        svc["healthcheck"] = {"test": test, "interval": "1s", "timeout": "30s", "retries": 1, **health}
    return svc


SERVICES = {
    "ok": _svc("sleep infinity", ["CMD", "true"]),
    "plain": _svc("sleep infinity"),  # no healthcheck: running is enough
    "sick": _svc("sleep infinity", ["CMD", "false"]),
    "quits": _svc("exit 3"),
    "slow": _svc("sleep infinity", ["CMD", "false"], start_period="300s"),  # "starting" for 5 minutes
}


@pytest.fixture(scope="module", params=["v1", "v2"])
def project(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    if subprocess.run(["docker", "image", "inspect", BASE_IMAGE], capture_output=True).returncode != 0:
        pytest.fail(f"{BASE_IMAGE} missing: run `bash tests/setup.sh`", pytrace=False)
    d = tmp_path_factory.mktemp(f"wait-{request.param}")
    (d / "docker-compose.yml").write_text(yaml.safe_dump({"services": SERVICES}))
    compose = "docker-compose" if request.param == "v1" else "docker compose"
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("COMPOSE")}, "COMPOSE": compose,
           "COMPOSE_PROJECT_NAME": "gik-wait-" + secrets.token_hex(3)}
    up = subprocess.run([*compose.split(), "up", "-d"], cwd=d, env=env, capture_output=True, text=True, timeout=300)
    try:
        assert up.returncode == 0, up.stderr
        yield {"dir": d, "env": env}
    finally:
        subprocess.run([*compose.split(), "down", "-t", "1"], cwd=d, env=env, capture_output=True, timeout=300)


def wait(project: dict, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", str(SCRIPT), *args], cwd=project["dir"], env=project["env"], capture_output=True,
                          text=True, timeout=120)


def test_healthy_and_plain_services_pass(project: dict) -> None:
    r = wait(project, "60", "ok", "plain")
    assert r.returncode == 0, r.stderr
    cid = subprocess.run([*project["env"]["COMPOSE"].split(), "ps", "-q", "ok"], cwd=project["dir"],
                         env=project["env"], capture_output=True, text=True, check=True).stdout.split()
    health = subprocess.run(["docker", "inspect", "-f", "{{.State.Health.Status}}", *cid], capture_output=True,
                            text=True, check=True).stdout.split()
    assert health == ["healthy"]  # what Docker says once the script returned, not what an endpoint said


def test_unhealthy_container_is_named(project: dict) -> None:
    r = wait(project, "60", "ok", "sick")
    assert r.returncode == 1
    named = r.stderr.split("--")[0]  # the failed containers, before the hint
    assert "sick" in named and "unhealthy" in named and "ok" not in named


def test_exited_container_is_named(project: dict) -> None:
    r = wait(project, "60", "quits")
    assert r.returncode == 1 and "quits" in r.stderr and "exited" in r.stderr


def test_timeout_names_what_is_still_starting(project: dict) -> None:
    r = wait(project, "3", "slow", "ok")
    assert r.returncode == 1
    assert "still not healthy after 3s" in r.stderr and "slow" in r.stderr.rsplit("after 3s", 1)[1]


@pytest.mark.parametrize("args", [[], ["60"], ["soon", "ok"], ["-1", "ok"]])
def test_usage_errors_exit_2(project: dict, args: list[str]) -> None:
    r = wait(project, *args)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "wait-healthy.sh" in r.stderr
