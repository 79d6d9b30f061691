"""Bad or unreachable lab gateway input ends in one line naming the setting, never a config that routes nowhere:

- a host reached through its own gateway whose gateway is published on loopback (``gateway_bind_address``, loopback
  by default): refused, naming the setting and the host;
- an engine the lab gateway cannot reach (published on loopback only, the host runs no gateway): refused by
  ``lab_upstreams`` and by the role's filter (roles/gateway/filter_plugins/gik_gateway.py), naming the bind setting
  and ``gateway_enabled``, never dropped; every host so: the same line, not "no engine enabled";
- a host gateway with the lab's certificate (``tls``) serves HTTPS only: the lab gateway calls it at https://;
- ``python -m healthchecks.gateway`` (the README's compose command): a missing, directory or unparsable ``--env``, a
  ``--lab`` document of the wrong JSON types, ``--engines gateway``: exit 2, one line, no traceback.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

from healthchecks import gateway, stack

pytestmark = pytest.mark.unit
CAT = stack.load()
ROOT = Path(__file__).resolve().parents[2]
ENGINE = "llamacpp"  # published by inference_stack_bind_address (no bind setting of its own)
PUBLISHED = {"inference_stack_bind_address": "10.0.0.11"}


def _filter_module() -> ModuleType:
    path = ROOT / "roles" / "gateway" / "filter_plugins" / "gik_gateway.py"
    spec = importlib.util.spec_from_file_location("gik_gateway_filter_under_test", path)
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


# -- A: a host gateway on loopback, engines on loopback ---------------------------------------------------------
def test_a_host_gateway_published_on_loopback_is_refused_naming_gateway_bind_address() -> None:
    for settings in ({}, {"gateway_bind_address": "127.0.0.1"}, {"gateway_bind_address": "::1"}):
        with pytest.raises(gateway.GatewayError) as err:
            gateway.lab_upstreams({"gpu01": {"address": "10.0.0.11", "engines": [ENGINE], "gateway_port": 4400,
                                             "settings": settings}})
        msg = str(err.value)
        assert "gateway_bind_address" in msg and "gpu01" in msg and "10.0.0.11" in msg, msg
        assert "\n" not in msg
    # published on its lab address: routed through it
    [up] = gateway.lab_upstreams({"gpu01": {"address": "10.0.0.11", "engines": [ENGINE], "gateway_port": 4400,
                                            "settings": {"gateway_bind_address": "0.0.0.0"}}})
    assert up.api_base == "http://10.0.0.11:4400/v1" and up.sends and up.sends.endswith(f"@{ENGINE}")
    # the same machine (a loopback address) reaches a loopback gateway
    [up] = gateway.lab_upstreams({"here": {"address": "127.0.0.1", "engines": [ENGINE], "gateway_port": 4400}})
    assert up.api_base == "http://127.0.0.1:4400/v1"


def test_an_engine_only_on_loopback_without_a_gateway_is_refused_not_dropped() -> None:
    hosts = {"gpu01": {"address": "10.0.0.11", "engines": [ENGINE], "settings": PUBLISHED},
             "gpu02": {"address": "10.0.0.12", "engines": [ENGINE]}}  # loopback (the default), no gateway
    with pytest.raises(gateway.GatewayError) as err:
        gateway.lab_upstreams(hosts)
    msg = str(err.value)
    assert "gpu02" in msg and "inference_stack_bind_address" in msg and "gateway_enabled" in msg, msg
    # a caller that asks for the list still gets it (and the reachable ones)
    skipped: list[str] = []
    assert [u.where for u in gateway.lab_upstreams(hosts, skipped=skipped)] == [f"gpu01/{ENGINE}"]
    assert skipped == [f"gpu02/{ENGINE}"]


def _spec(hosts: dict[str, Any]) -> dict[str, Any]:
    return {"options": {}, "hosts": hosts}


def test_the_roles_filter_fails_naming_the_settings_for_an_unreachable_host() -> None:
    from ansible.errors import AnsibleFilterError

    f = _filter_module().gik_gateway_config
    some = {"gpu01": {"address": "10.0.0.11", "engines": [ENGINE], "settings": PUBLISHED},
            "gpu02": {"address": "10.0.0.12", "engines": ["ollama", ENGINE]}}
    with pytest.raises(AnsibleFilterError) as err:
        f(_spec(some))
    msg = str(err.value.message)
    assert "gpu02" in msg and "inference_stack_bind_address" in msg and "gateway_enabled" in msg, msg
    assert "OLLAMA_BIND_ADDRESS" in msg, msg  # Ollama too: it has no Ansible name, its compose variable is named
    every = {"gpu02": {"address": "10.0.0.12", "engines": [ENGINE]},
             "gpu03": {"address": "10.0.0.13", "engines": [ENGINE]}}
    with pytest.raises(AnsibleFilterError) as err:
        f(_spec(every))
    msg = str(err.value.message)
    assert "no engine enabled" not in msg and "gateway_enabled" in msg and "gpu03" in msg, msg
    with pytest.raises(AnsibleFilterError) as err:  # a host gateway on loopback, through the role's filter
        f(_spec({"gpu04": {"address": "10.0.0.14", "engines": [ENGINE], "gateway_port": 4000}}))
    assert "gateway_bind_address" in str(err.value.message)
    cfg = yaml.safe_load(f(_spec({"gpu01": some["gpu01"]})))  # a reachable lab renders
    assert {d["litellm_params"]["api_base"] for d in cfg["model_list"]} == {"http://10.0.0.11:8080/v1"}


# -- B: a host gateway with the lab's certificate serves HTTPS only -----------------------------------------------
def test_a_host_gateway_with_tls_is_called_over_https() -> None:
    base = {"address": "10.0.0.11", "engines": [ENGINE], "gateway_port": 4400,
            "settings": {"gateway_bind_address": "0.0.0.0"}}
    [tls] = gateway.lab_upstreams({"gpu01": {**base, "tls": True}})
    [plain] = gateway.lab_upstreams({"gpu01": {**base, "tls": False}})
    assert tls.api_base == "https://10.0.0.11:4400/v1"
    assert plain.api_base == "http://10.0.0.11:4400/v1"
    cfg = gateway.render([tls])
    assert {d["litellm_params"]["api_base"] for d in cfg["model_list"]} == {"https://10.0.0.11:4400/v1"}
    with pytest.raises(gateway.GatewayError, match="tls must be true or false"):
        gateway.lab_upstreams({"gpu01": {**base, "tls": "yes"}})


# -- C, D: the command line -----------------------------------------------------------------------------------------
def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "healthchecks.gateway", *args], capture_output=True, text=True,
                          cwd=ROOT, timeout=60)


def _one_line(r: subprocess.CompletedProcess[str], *names: str) -> str:
    assert r.returncode == 2, (r.returncode, r.stdout[-500:], r.stderr[-2000:])
    assert "Traceback" not in r.stderr, r.stderr[-3000:]
    assert r.stdout == "", r.stdout[-500:]
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("gateway: "), r.stderr
    for n in names:
        assert n in lines[0], (n, lines[0])
    return lines[0]


def test_cli_env_that_is_missing_a_directory_or_unparsable_is_one_line(tmp_path: Path) -> None:
    _one_line(_cli("--env", str(tmp_path)), "--env", str(tmp_path), "directory")
    _one_line(_cli("--env", str(tmp_path / "nonexistent.env")), "--env", "nonexistent.env", "no such file")
    bad = tmp_path / ".env"
    bad.write_text('GATEWAY_NUM_RETRIES=1\nVLLM_MODEL="unterminated\n')
    _one_line(_cli("--env", str(bad)), "--env", str(bad), "unterminated")
    good = tmp_path / "good.env"
    good.write_text("GATEWAY_NUM_RETRIES=5\n")
    r = _cli("--env", str(good))
    assert r.returncode == 0, r.stderr
    assert yaml.safe_load(r.stdout)["router_settings"]["num_retries"] == 5


@pytest.mark.parametrize("doc, names", [
    ({"gpu01": {"address": "10.0.0.11", "models": ["m"]}}, ("gpu01", "models", "list")),
    ({"gpu01": {"address": "10.0.0.11", "engines": "llamacpp"}}, ("gpu01", "engines", "str")),
    ({"gpu01": {"address": "10.0.0.11", "engines": [1]}}, ("gpu01", "engines")),
    ({"gpu01": {"address": ["10.0.0.11"]}}, ("gpu01", "address")),
    ({"gpu01": {"address": "10.0.0.11", "ports": [8080]}}, ("gpu01", "ports")),
    ({"gpu01": {"address": "10.0.0.11", "settings": "x"}}, ("gpu01", "settings")),
    ({"gpu01": {"address": "10.0.0.11", "gateway_port": True}}, ("gpu01", "gateway_port")),
    ({"gpu01": {"address": "10.0.0.11", "adress": "x"}}, ("gpu01", "adress")),
    ({"gpu01": ["10.0.0.11"]}, ("gpu01",)),
    ([{"gpu01": {}}], ("--lab",)),
    ({}, ("--lab",)),
])
def test_cli_lab_document_of_wrong_types_is_one_line(tmp_path: Path, doc: Any, names: tuple[str, ...]) -> None:
    lab = tmp_path / "lab.json"
    lab.write_text(json.dumps(doc))
    _one_line(_cli("--lab", str(lab)), "--lab", *names)


def test_cli_lab_document_that_is_not_json_or_missing_is_one_line(tmp_path: Path) -> None:
    lab = tmp_path / "lab.json"
    lab.write_text("{not json")
    _one_line(_cli("--lab", str(lab)), "--lab", "not JSON")
    _one_line(_cli("--lab", str(tmp_path / "none.json")), "--lab", "none.json")


def test_cli_never_routes_the_gateway_to_itself() -> None:
    assert gateway.SELF == stack.GATEWAY
    _one_line(_cli("--engines", "gateway"), "'gateway' is not an engine")
    r = _cli()  # the deployed engines: none of them the gateway
    assert r.returncode == 0, r.stderr
    engines = {d["model_info"]["engine"] for d in yaml.safe_load(r.stdout)["model_list"]}
    assert engines and stack.GATEWAY not in engines
