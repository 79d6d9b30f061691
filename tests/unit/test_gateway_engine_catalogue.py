"""The gateway (LiteLLM proxy) is an engine of the catalogue (healthchecks/stack.yml ``engines.gateway``, its Spec in
healthchecks/engines/gateway.py) that no stack deployer runs (``deployed: false``: roles/gateway and the compose
profile ``gateway`` do): every reader of the catalogue keeps the deployed engines as before, and the checkers know
the gateway (``gateway=URL``, compose discovery when its profile runs, compose-preflight ``--services gateway``)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from healthchecks import exposure, gateway, preflight, stack
from healthchecks.endpoints.compose import from_compose
from healthchecks.endpoints.url import parse_endpoint
from healthchecks.engines import CATALOGUE, DEPLOYED, ENGINES
from healthchecks.errors import ConfigError

pytestmark = pytest.mark.unit
ROOT = Path(__file__).resolve().parents[2]
CAT = stack.load()
BIN = Path(sys.executable).parent


def test_the_gateway_is_an_engine_of_the_catalogue_that_no_stack_deployer_runs() -> None:
    e = CAT.engines["gateway"]
    assert (e.port, e.deployed) == (4000, False)
    assert (e.port_setting.id, e.model_setting.id) == ("gateway_port", "gateway_model")
    assert e.api_key_file_setting is not None and e.api_key_file_setting.id == "gateway_master_key_file"
    assert e.model_path_setting is None and e.companions == () and e.model_check is None
    spec = CATALOGUE["gateway"]
    assert (spec.compose_service, spec.env_port, spec.env_model, spec.env_api_key_file) == \
        ("gateway", "GATEWAY_PORT", "GATEWAY_MODEL", "GATEWAY_MASTER_KEY_FILE")
    assert (spec.ansible_port, spec.ansible_model, spec.deployed) == ("gateway_port", "gateway_model", False)
    assert ENGINES["gateway"].spec is spec
    # the deployed engines, their order and the deployers' choice of engines are what they were
    assert CAT.deployed == list(DEPLOYED) == ["vllm", "ollama", "llamacpp"]
    engines = CAT.settings["engines"]
    assert engines.default == CAT.deployed and list(engines.choices or ()) == CAT.deployed


def test_llamacpp_names_its_key_file_setting() -> None:
    e = CAT.engines["llamacpp"]
    assert e.api_key_file_setting is not None and e.api_key_file_setting.id == "llamacpp_api_key_file"
    assert CATALOGUE["llamacpp"].env_api_key_file == "LLAMACPP_API_KEY_FILE" == e.api_key_file_setting.env
    assert e.api_key_file_setting.default == "/dev/null"  # no key unless the lab gives one (compose's default)
    assert exposure.key_file_setting("llamacpp", CAT) is e.api_key_file_setting
    assert exposure.key_file_setting("gateway", CAT) is CAT.engines["gateway"].api_key_file_setting
    assert exposure.key_file_setting("ollama", CAT) is None  # Ollama takes no key


def test_inference_stack_settings_refuse_the_gateway_as_a_stack_engine() -> None:
    """The Ansible settings check (roles/preflight, pyinfra) takes inference_stack_engines from the catalogue's
    choices: the gateway is not one (roles/gateway deploys it)."""
    setting = CAT.by_ansible()["inference_stack_engines"]
    with pytest.raises(stack.SettingError, match=r"inference_stack_engines=.*'gateway' is not one of vllm, ollama"):
        setting.convert("vllm,gateway")
    # the port clash check and the exposure rule of the deployers see the deployed engines only
    assert CAT.port_clashes({**CAT.ansible_defaults(), "inference_stack_vllm_port": 4000}) == []
    values, errors = CAT.convert_all({"inference_stack_engines": "vllm,llamacpp", "gateway_port": "8000"})
    assert errors == [] and values["gateway_port"] == 8000


def test_compose_preflight_knows_the_gateway_but_does_not_require_it(tmp_path: Path) -> None:
    assert preflight.ENGINE_PORTS["gateway"] == ("GATEWAY_PORT", 4000)
    r = subprocess.run([str(BIN / "compose-preflight"), "--help"], capture_output=True, text=True, timeout=60,
                       env={"COLUMNS": "200", "PATH": "/usr/bin:/bin"})
    assert r.returncode == 0 and "(default: vllm,ollama,llamacpp)" in r.stdout, r.stdout
    project = tmp_path / "compose"
    # (not the images' build folders: 1 GB of wheels that compose/images/build.sh may be refilling on the other
    # xdist worker)
    shutil.copytree(ROOT / "compose", project,
                    ignore=shutil.ignore_patterns(".env", "secrets", "models", "gateway", "wheels", "bin"))
    shutil.copy(ROOT / "compose" / ".env.example", project / ".env")
    # --services gateway is a known service; its own key file is checked (and no engine's model)
    r = subprocess.run([str(BIN / "compose-preflight"), str(project), "--services", "gateway"], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 1 and "unknown service" not in r.stderr, r.stderr
    assert "GATEWAY_MASTER_KEY_FILE" in r.stderr and "VLLM_API_KEY_FILE" not in r.stderr, r.stderr
    # the default services leave it out
    r = subprocess.run([str(BIN / "compose-preflight"), str(project)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and "VLLM_API_KEY_FILE" in r.stderr and "GATEWAY" not in r.stderr, r.stderr


def test_compose_discovery_finds_the_gateway_only_when_its_profile_runs(tmp_path: Path) -> None:
    shutil.copy(ROOT / "compose" / "compose.yaml", tmp_path)
    compose = tmp_path / "compose.yaml"
    assert "gateway" not in {e.engine for e in from_compose(compose, environ={})}
    eps = {e.engine: e for e in from_compose(compose, environ={"COMPOSE_PROFILES": "gateway"})}
    assert set(eps) == {*DEPLOYED, "gateway"}
    gw = eps["gateway"]
    assert (gw.url, gw.model, gw.name) == ("http://127.0.0.1:4000", "smollm2:135m", "gateway")
    eps = {e.engine: e for e in from_compose(compose, environ={"COMPOSE_PROFILES": "gateway", "GATEWAY_PORT": "4100",
                                                                "GATEWAY_MODEL": "lab-model"})}
    assert (eps["gateway"].url, eps["gateway"].model) == ("http://127.0.0.1:4100", "lab-model")


def test_gateway_url_names_the_gateway_engine() -> None:
    ep = parse_endpoint("gateway=http://lab-gw:4000")
    assert (ep.engine, ep.url) == ("gateway", "http://lab-gw:4000")
    with pytest.raises(ConfigError, match="no scheme"):
        parse_endpoint("gateway")  # it has no public address of its own


def test_the_verify_command_line_takes_the_gateway_like_any_engine() -> None:
    argv = stack.endpoint_args("10.0.0.5", ["vllm", "gateway"], {"vllm": 8000, "gateway": 4000},
                               {"vllm": "m", "gateway": "smollm2:135m"}, {"gateway": "/k/gw"})
    assert argv == ["vllm=http://10.0.0.5:8000", "gateway=http://10.0.0.5:4000", "--model", "vllm=m",
                    "--model", "gateway=smollm2:135m", "--api-key-file", "gateway=/k/gw"]


def test_the_gateway_is_never_its_own_upstream() -> None:
    """Its config renderer (healthchecks/gateway.py) reaches the deployed engines; the catalogue's gateway entry
    is no upstream, and the engines' keys (vLLM's, now llama.cpp's by its catalogue entry) are exported into it."""
    assert [u.engine for u in gateway.host_upstreams(CAT.deployed)] == list(DEPLOYED)
    with pytest.raises(gateway.GatewayError, match="engine 'gateway' is not an engine of the catalogue"):
        gateway.host_upstreams(["gateway"])
    assert gateway.key_env("llamacpp", CAT) == "LLAMACPP_API_KEY"
    assert gateway.key_env("vllm", CAT) == "VLLM_API_KEY"
    assert gateway.key_env("ollama", CAT) is None
