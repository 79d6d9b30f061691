"""testinfra suite for every way the kit deploys: Ansible (site.yml), pyinfra (pyinfra/deploy.py) or compose alone.

    # a lab deployed by Ansible: settings from the inventory (host and group variables)
    pytest tests/infra --hosts=ansible://gpu_hosts --ansible-inventory=inventory/hosts.yml
    # as a non-root SSH user: add --sudo (Docker's socket and the root-only secret files need it)
    pytest tests/infra --hosts=ssh://admin@gpu01 --sudo --compose-dir /opt/gpu-inference-kit/compose
    # this workstation, deployed by pyinfra (the default folder) or by `docker compose up` in compose/
    pytest tests/infra --hosts=local://
    pytest tests/infra --hosts=local:// --compose-dir compose

Settings come from the Ansible inventory when the host is an ``ansible://`` one; otherwise from the deployed compose
project's ``.env`` on the host (``--compose-dir``, default /opt/gpu-inference-kit/compose where Ansible and pyinfra
put it), otherwise the defaults below. ``--engines vllm,llamacpp`` names the engines that must run; without it:
the inventory's ``inference_stack_engines``, or the engines that have a container in the compose project.
"""

from __future__ import annotations

import json
import posixpath
import re
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

# The kit's checkout holds this suite: the stack catalogue (healthchecks/stack.yml, read with PyYAML only) gives the
# engines, their ports and setting names and the defaults below, with or without the kit installed.
KIT = Path(__file__).resolve().parents[2]
if str(KIT) not in sys.path:
    sys.path.insert(0, str(KIT))
from healthchecks import stack  # noqa: E402

CATALOGUE = stack.load()
_SUITE_SETTINGS = ("gpu", "engines", "bind_address", "dir", "project_name")
DEFAULTS: dict[str, Any] = {
    **{CATALOGUE.settings[k].ansible or k: CATALOGUE.settings[k].default for k in _SUITE_SETTINGS},
    **{e.port_setting.ansible or e.name: e.port for e in CATALOGUE.engines.values() if e.deployed},
    "docker_manage_service": yaml.safe_load((KIT / "roles" / "docker" / "defaults" / "main.yml").read_text())[
        "docker_manage_service"],
}
ENGINES: dict[str, dict[str, Any]] = {
    n: {"ansible_port": e.port_setting.ansible, "env_port": e.port_setting.env, "default_port": e.port}
    for n, e in CATALOGUE.engines.items() if e.deployed}


def as_bool(value: Any, name: str) -> bool:
    """A boolean as Ansible reads it ("false", "no", 0 ... are false): the stack catalogue's one reader."""
    try:
        return bool(stack.Setting(id=name, type="bool").convert(value, name=name))
    except stack.SettingError as e:
        raise pytest.UsageError(str(e)) from None


def _name(setting: str) -> str:
    """The Ansible variable of a catalogue setting."""
    return CATALOGUE.settings[setting].ansible or setting


def as_list(value: Any) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()] if isinstance(value, str) else [str(v) for v in value]


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("gpu-inference-kit")
    group.addoption("--compose-dir", default=None,
                    help="the deployed compose project on the host; its .env gives the settings when no Ansible "
                         "inventory is used (default: /opt/gpu-inference-kit/compose when it has a .env)")
    group.addoption("--engines", default=None,
                    help="comma-separated engines that must run (default: the inventory's, else the engines with a "
                         "container in the compose project)")


def _render(value: Any, variables: dict[str, Any]) -> Any:
    """Inventory values may be Jinja expressions over other variables (e.g. hf_secret_dir)."""
    if isinstance(value, str) and "{{" in value:
        import jinja2

        return jinja2.Environment().from_string(value).render(**variables)
    return value


def _from_inventory(host: Any) -> dict[str, Any]:
    variables = host.ansible.get_variables()
    values = dict(DEFAULTS)
    values.update({k: v for k, v in variables.items() if k in DEFAULTS or k == "hf_secret_dir"})
    values = {k: _render(v, {**values, **variables}) for k, v in values.items()}
    secret_dir = values.get("hf_secret_dir") or f"{values[_name('dir')]}/secrets"
    return {
        "source": "ansible inventory",
        "gpu": as_bool(values[_name("gpu")], _name("gpu")),
        "engines": as_list(values[_name("engines")]),
        "bind": str(values[_name("bind_address")]),
        "ports": {e: int(values.get(spec["ansible_port"], spec["default_port"])) for e, spec in ENGINES.items()},
        "project": str(values[_name("project_name")]),
        "secret_dir": secret_dir,
        "hf_token_file": f"{secret_dir}/hf_token",
        "vllm_api_key_file": f"{secret_dir}/vllm_api_key",
        "managed": True,  # Ansible's contract: root:root 0400 files in a 0700 folder
        "docker_manage_service": as_bool(values["docker_manage_service"], "docker_manage_service"),
    }


def parse_env(text: str) -> dict[str, str]:
    """compose's .env: KEY=VALUE lines, # comments, optional quotes."""
    out = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.removeprefix("export ").partition("=")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        elif " #" in value:
            value = value.split(" #", 1)[0].rstrip()
        out[key.strip()] = value
    return out


def _from_env_file(host: Any, compose_dir: str | None) -> dict[str, Any]:
    default_dir = f"{DEFAULTS[_name('dir')]}/compose"
    if compose_dir is None and host.file(f"{default_dir}/.env").exists:
        compose_dir = default_dir
    env: dict[str, str] = {}
    if compose_dir is not None:
        if not compose_dir.startswith("/"):
            compose_dir = posixpath.normpath(posixpath.join(host.check_output("pwd"), compose_dir))
        env_file = host.file(f"{compose_dir}/.env")
        if not env_file.exists:
            raise pytest.UsageError(f"--compose-dir {compose_dir}: no .env there (the deployed project's settings)")
        env = parse_env(env_file.content_string)

    def path(value: str | None, name: str) -> str:
        if compose_dir is None:  # nothing deployed where we looked: where Ansible and pyinfra put the secrets
            return f"{DEFAULTS[_name('dir')]}/secrets/{name}"
        p = value or f"./secrets/{name}"
        return p if p.startswith("/") else posixpath.normpath(posixpath.join(compose_dir, p))

    project = env.get("COMPOSE_PROJECT_NAME") or (
        re.sub(r"[^a-z0-9_-]", "", posixpath.basename(compose_dir).lower()) if compose_dir
        else str(DEFAULTS[_name("project_name")]))
    token_file = path(env.get("HF_TOKEN_FILE"), "hf_token")
    return {
        "source": f"{compose_dir}/.env" if compose_dir else "defaults",
        "gpu": "compose.gpu.yaml" in env.get("COMPOSE_FILE", "compose.yaml:compose.gpu.yaml"),
        "engines": None,  # the engines with a container in the project (below), unless --engines names them
        "bind": env.get("BIND_ADDRESS") or "127.0.0.1",
        "ports": {e: int(env.get(spec["env_port"]) or spec["default_port"]) for e, spec in ENGINES.items()},
        "project": project,
        "secret_dir": posixpath.dirname(token_file),
        "hf_token_file": token_file,
        "vllm_api_key_file": path(env.get("VLLM_API_KEY_FILE"), "vllm_api_key"),
        "managed": False,  # README's contract for compose: owner-only (0600 or stricter)
        "docker_manage_service": host.file("/run/systemd/system").is_directory,
    }


def _project_containers(host: Any, project: str) -> dict[str, dict[str, Any]]:
    """compose service -> `docker ps` row, for every container of the project (running or not)."""
    r = host.run("docker ps -a --filter label=com.docker.compose.project=%s --format '{{json .}}'", project)
    if r.rc != 0:
        pytest.fail(f"`docker ps` failed on the host ({r.stderr.strip()}): run as root or with --sudo", pytrace=False)
    by_service = {}
    for line in r.stdout.splitlines():
        if line.strip():
            row = json.loads(line)
            labels = dict(kv.split("=", 1) for kv in row.get("Labels", "").split(",") if "=" in kv)
            by_service[labels.get("com.docker.compose.service", "")] = row
    return by_service


@pytest.fixture(scope="module")
def cfg(host: Any, request: pytest.FixtureRequest) -> dict[str, Any]:
    if host.backend.NAME == "ansible":
        values = _from_inventory(host)
    else:
        values = _from_env_file(host, request.config.getoption("--compose-dir"))
    wanted = request.config.getoption("--engines")
    if wanted:
        values["engines"] = as_list(wanted)
    elif values["engines"] is None:
        values["engines"] = [e for e in ENGINES if e in _project_containers(host, values["project"])] or list(ENGINES)
    unknown = [e for e in values["engines"] if e not in ENGINES]
    if unknown:
        raise pytest.UsageError(f"unknown engine(s) {', '.join(unknown)}: expected {', '.join(ENGINES)}")
    return values


@pytest.fixture
def containers(host: Any, cfg: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """compose service -> `docker ps` row for the deployed project's containers."""
    return _project_containers(host, cfg["project"])
