"""The engine catalogue is the one list of engines, ports and setting names: compose/, the Ansible roles,
the inventory example and the testinfra suite must agree with it, and no module outside ``engines/``
branches on an engine's name."""

from __future__ import annotations

import ast
import re
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from healthchecks import preflight
from healthchecks.endpoints import from_compose, read_dotenv
from healthchecks.engines import CATALOGUE, DEPLOYED, ENGINES, NAMES

pytestmark = pytest.mark.unit
ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "compose"
ROLES = ROOT / "roles"
IN_COMPOSE = [s for s in CATALOGUE.values() if s.compose_service]


def _yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def test_every_engine_module_is_complete() -> None:
    assert NAMES[-1] == "openai", "the generic server must be detected last"
    for name, engine in ENGINES.items():
        assert engine.spec.name == name
        assert engine.default_api in engine.apis
        if engine.spec.deployed:
            s = engine.spec
            assert s.default_port and s.compose_service == name and s.env_port and s.env_model
            assert s.ansible_port == f"inference_stack_{name}_port" and s.ansible_model, name


@pytest.mark.parametrize("spec", IN_COMPOSE, ids=lambda s: s.name)
def test_compose_service_follows_catalogue(spec: Any) -> None:
    doc = _yaml(COMPOSE / "compose.yaml")
    svc = doc["services"][spec.compose_service]
    labels = svc["labels"]
    assert labels["io.gpu-inference-kit.engine"] == spec.name
    assert labels["io.gpu-inference-kit.port"] == str(spec.default_port)
    assert labels["io.gpu-inference-kit.model"].startswith(f"${{{spec.env_model}:-")
    assert any(str(p).endswith(f"${{{spec.env_port}:-{spec.default_port}}}:{spec.default_port}")
               for p in svc["ports"]), svc["ports"]


@pytest.mark.parametrize("spec", IN_COMPOSE, ids=lambda s: s.name)
def test_env_example_follows_catalogue(spec: Any) -> None:
    env = read_dotenv(COMPOSE / ".env.example")
    assert env[spec.env_port] == str(spec.default_port)
    assert spec.env_model in env
    if spec.env_model_path:
        assert env[spec.env_model_path].startswith("/models/")
    if spec.env_api_key_file:
        assert spec.env_api_key_file in env


def test_compose_discovery_finds_every_deployed_engine_at_its_port(tmp_path: Path) -> None:
    shutil.copy(COMPOSE / "compose.yaml", tmp_path)  # without a user's compose/.env beside it
    eps = {e.engine: e for e in from_compose(tmp_path / "compose.yaml", environ={})}
    for name in DEPLOYED:
        assert eps[name].port == CATALOGUE[name].default_port


def test_role_defaults_follow_catalogue() -> None:
    defaults = _yaml(ROLES / "inference_stack" / "defaults" / "main.yml")
    assert defaults["inference_stack_engines"] == list(DEPLOYED)
    template = (ROLES / "inference_stack" / "templates" / "env.j2").read_text()
    for name in DEPLOYED:
        s = CATALOGUE[name]
        assert defaults[s.ansible_port] == s.default_port, s.ansible_port
        assert s.ansible_model in defaults, s.ansible_model
        assert re.search(rf"^{s.env_port}={{{{ {s.ansible_port} }}}}$", template, re.M), s.env_port
        assert re.search(rf"^{s.env_model}={{{{ {s.ansible_model} }}}}$", template, re.M), s.env_model


def test_role_argument_specs_list_the_deployed_engines() -> None:
    found = 0
    for spec_file in ROLES.glob("*/meta/argument_specs.yml"):
        for entry in (_yaml(spec_file).get("argument_specs") or {}).values():
            opt = (entry.get("options") or {}).get("inference_stack_engines")
            if opt and "choices" in opt:
                found += 1
                assert sorted(opt["choices"]) == sorted(DEPLOYED), spec_file
    assert found >= 1


def test_every_port_default_written_in_roles_and_inventory_matches() -> None:
    """``inference_stack_<engine>_port | default(N)`` anywhere in roles/, and any port key in the example
    inventory, must name a deployed engine and its catalogue port."""
    pattern = re.compile(r"inference_stack_(\w+?)_port\s*\|\s*default\((\d+)\)")
    seen = 0
    for path in [*ROLES.rglob("*.yml"), *ROLES.rglob("*.j2"), *(ROOT / "playbooks").rglob("*.yml"),
                 ROOT / "site.yml"]:
        for engine, port in pattern.findall(path.read_text()):
            seen += 1
            assert engine in DEPLOYED, f"{path}: unknown engine {engine}"
            assert int(port) == CATALOGUE[engine].default_port, f"{path}: {engine} port {port}"
    for path in (ROOT / "inventory").rglob("*.yml"):
        for key, value in (_yaml(path) or {}).items() if path.parent.name == "gpu_hosts" else ():
            m = re.fullmatch(r"inference_stack_(\w+?)_port", key)
            if m:
                seen += 1
                assert m.group(1) in DEPLOYED and value == CATALOGUE[m.group(1)].default_port, (path, key)
    assert seen >= len(DEPLOYED)


def test_infra_suite_defaults_follow_catalogue() -> None:
    """The testinfra suite stays standalone for users; its copy of the ports must equal the catalogue."""
    tree = ast.parse((ROOT / "tests" / "infra" / "conftest.py").read_text())
    defaults = next(ast.literal_eval(n.value) for n in ast.walk(tree)
                    if isinstance(n, ast.Assign | ast.AnnAssign)
                    and any(isinstance(t, ast.Name) and t.id == "DEFAULTS"
                            for t in (n.targets if isinstance(n, ast.Assign) else [n.target])))
    for name in DEPLOYED:
        assert defaults[CATALOGUE[name].ansible_port] == CATALOGUE[name].default_port
    assert sorted(defaults["inference_stack_engines"]) == sorted(DEPLOYED)


def test_compose_preflight_knows_every_compose_engine() -> None:
    assert {s.compose_service: (s.env_port, s.default_port) for s in IN_COMPOSE} == preflight.ENGINE_PORTS


ENGINE_LITERAL = re.compile(r"""(==|!=|\bin\b|\bnot in\b)\s*[(\[{{]?\s*["']({})["']""".format("|".join(NAMES)))


def test_no_engine_name_branch_outside_the_engine_modules() -> None:
    pkg = ROOT / "healthchecks"
    offenders = []
    for path in pkg.rglob("*.py"):
        if path.parent.name == "engines":
            continue
        for n, line in enumerate(path.read_text().splitlines(), 1):
            if ENGINE_LITERAL.search(line) or re.search(r"""engine\s*(==|!=)\s*["']""", line):
                offenders.append(f"{path.relative_to(ROOT)}:{n}: {line.strip()}")
    assert not offenders, "\n".join(offenders)


def test_an_engine_with_a_public_address_is_named_alone() -> None:
    from healthchecks.endpoints import parse_endpoint
    from healthchecks.errors import ConfigError

    ep = parse_endpoint("hf")
    assert ep.engine == "hf" and ep.url == "https://router.huggingface.co"  # the router's /v1 base
    assert parse_endpoint(" HF ").url == ep.url
    for name in DEPLOYED:  # engines without one still need a URL
        with pytest.raises(ConfigError, match="no scheme"):
            parse_endpoint(name)
