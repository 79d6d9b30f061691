"""The deployers' port clash check (healthchecks/stack.py ``Catalogue.port_clashes``: the Ansible settings check,
roles/preflight's ``gik_stack_check``, and pyinfra's ``gik_settings.validate``) compares what a host really
publishes: every enabled engine and, where the host runs it (``gateway_enabled``, or the lab gateway group
``gateway_hosts``), the gateway; each as an (address, port) pair read from the setting its compose ports line
interpolates. ``gateway_port: 8000`` beside vLLM used to pass the check and fail at ``docker compose up``."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Any

import pytest

from healthchecks import exposure, gateway, preflight, stack

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
CAT = stack.load()
DEFAULTS = CAT.ansible_defaults()
DEPLOYED = [e for e in CAT.deployed if CAT.engines[e].port_setting.ansible]
# the gateway's message: both port settings named, where they meet, what to change
GW_WORDS = "the gateway and every engine need their own port (or address)"


def clashes(gateway_on: bool | None = None, **values: Any) -> list[str]:
    return CAT.port_clashes({**DEFAULTS, **values}, gateway=gateway_on)


def _filter(name: str, plugin: str) -> Any:
    spec = importlib.util.spec_from_file_location(f"gik_test_{plugin}", ROOT / "roles" / "preflight" /
                                                  "filter_plugins" / f"{plugin}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.FilterModule().filters()[name]


# -- the gateway joins the comparison where the host runs it -------------------------------------------------------
@pytest.mark.parametrize("engine", DEPLOYED)
def test_the_gateway_on_an_engine_s_port_is_a_clash_naming_both_settings(engine: str) -> None:
    entry = CAT.engines[engine]
    port = entry.port_setting.default
    out = clashes(True, gateway_port=port)
    bind = CAT.bind_setting(engine)
    assert out == [f"port clash: gateway_port={port} is {entry.port_setting.ansible}'s port too, both on 127.0.0.1 "
                   f"(gateway_bind_address, {bind.ansible or bind.env}); {GW_WORDS}"]
    # a host without the gateway publishes no gateway port: nothing to compare
    assert clashes(False, gateway_port=port) == [] == clashes(gateway_port=port)
    # the engine not enabled on this host: its port is free for the gateway
    others = [e for e in DEPLOYED if e != engine]
    assert clashes(True, gateway_port=port, inference_stack_engines=others) == []


def test_the_gateway_on_its_own_port_or_its_own_loopback_address_is_no_clash() -> None:
    assert clashes(True) == []  # defaults: 4000 beside 8000, 11434, 8080
    assert clashes(True, gateway_port=8000, gateway_bind_address="127.0.0.2") == []
    assert clashes(True, gateway_port=8000, inference_stack_bind_address="127.0.0.2") == []
    assert clashes(True, gateway_port=8000, gateway_bind_address="10.1.2.3", inference_stack_bind_address="10.1.2.4") \
        == []


def test_a_wildcard_covers_every_address_of_its_family() -> None:
    assert clashes(True, gateway_port=8000, gateway_bind_address="0.0.0.0") == [
        "port clash: gateway_port=8000 is inference_stack_vllm_port's port too, gateway_bind_address=0.0.0.0 covers "
        f"inference_stack_bind_address=127.0.0.1; {GW_WORDS}"]
    assert clashes(True, gateway_port=8000, inference_stack_bind_address="0.0.0.0") == [
        "port clash: gateway_port=8000 is inference_stack_vllm_port's port too, inference_stack_bind_address=0.0.0.0 "
        f"covers gateway_bind_address=127.0.0.1; {GW_WORDS}"]
    assert clashes(True, gateway_port=8000, gateway_bind_address="0.0.0.0", inference_stack_bind_address="10.1.2.3")
    assert clashes(True, gateway_port=8000, gateway_bind_address="::", inference_stack_bind_address="::1")
    assert clashes(True, gateway_port=8000, gateway_bind_address="::1", inference_stack_bind_address="::1")
    # Docker publishes 0.0.0.0 and :: apart (one listener per family): no clash across families
    assert clashes(True, gateway_port=8000, gateway_bind_address="::") == []
    assert clashes(True, gateway_port=8000, gateway_bind_address="::1") == []


def test_engines_compare_address_and_port_too() -> None:
    """Ollama is published on OLLAMA_BIND_ADDRESS (127.0.0.1: the deployers never set it), vLLM and llama.cpp on
    inference_stack_bind_address: one port on two loopback addresses is two listeners."""
    assert clashes(inference_stack_vllm_port=11434, inference_stack_bind_address="127.0.0.2") == []
    assert clashes(inference_stack_vllm_port=11434, inference_stack_bind_address="0.0.0.0") == [
        "port clash: inference_stack_ollama_port=11434 is inference_stack_vllm_port's port too, "
        "inference_stack_bind_address=0.0.0.0 covers OLLAMA_BIND_ADDRESS=127.0.0.1; every engine needs its own port "
        "(or address)"]
    # the engines that share one address setting clash on any address: the message of before, word for word
    for address in ("127.0.0.1", "127.0.0.2", "0.0.0.0", "::1"):
        assert clashes(inference_stack_vllm_port=8080, inference_stack_bind_address=address) == [
            "port clash: inference_stack_llamacpp_port=8080 is inference_stack_vllm_port's port too; every engine "
            "needs its own port"]


def test_the_host_runs_the_gateway_as_site_yml_decides() -> None:
    """site.yml: roles/gateway on a gpu_hosts host where ``gateway_enabled | bool``, and on every host of
    gateway_hosts (the lab gateway, in the same compose project as that host's engines)."""
    for on in (True, "yes", "true", "True", "on", "1", 1):
        assert stack.runs_gateway({"gateway_enabled": on}), on
    for off in (False, "no", "false", "0", 0, "", None, "maybe"):
        assert not stack.runs_gateway({"gateway_enabled": off}), off
    assert not stack.runs_gateway({})
    assert stack.runs_gateway({"group_names": ["gateway_hosts", "gpu_hosts"]})
    assert not stack.runs_gateway({"group_names": ["gpu_hosts"], "gateway_enabled": False})
    # port_clashes and convert_all read it from the host's settings unless told
    assert clashes(gateway_port=8080, gateway_enabled=True)
    assert clashes(gateway_port=8080, group_names=["gpu_hosts", "gateway_hosts"])
    assert clashes(False, gateway_port=8080, gateway_enabled=True) == []


def test_convert_all_checks_the_gateway_port_from_text() -> None:
    """Text settings (INI inventory, -e, pyinfra --data) converted first, then compared."""
    _, errors = CAT.convert_all({"gateway_enabled": "true", "gateway_port": "8080"})
    assert errors == ["port clash: gateway_port=8080 is inference_stack_llamacpp_port's port too, both on 127.0.0.1 "
                      f"(gateway_bind_address, inference_stack_bind_address); {GW_WORDS}"]
    assert CAT.convert_all({"gateway_port": "8080"})[1] == []
    assert CAT.convert_all({"gateway_port": "8080"}, gateway=True)[1] == errors
    assert CAT.convert_all({"gateway_enabled": "true", "gateway_port": "8080",
                            "gateway_bind_address": "127.0.0.3"})[1] == []
    # a bad value is named on its own; the clash check needs every value right
    assert CAT.convert_all({"gateway_enabled": "true", "gateway_port": "eighty"})[1] == [
        "gateway_port='eighty' is not a port number (1-65535)"]


# -- one rule with compose and compose-preflight -------------------------------------------------------------------
@pytest.mark.parametrize("service", [*DEPLOYED, "gateway"])
def test_each_service_s_address_setting_is_the_one_its_compose_ports_line_reads(service: str) -> None:
    """The address compared is the one compose.yaml's ports line interpolates (healthchecks/exposure.py reads it,
    as compose-preflight does) and the one the gateway's config reads (healthchecks/gateway.py bind_setting)."""
    bind = CAT.bind_setting(service)
    assert gateway.bind_setting(service, CAT) is bind
    found = exposure.bindings(exposure.kit_compose(), CAT.env_defaults(), service)
    assert [b.setting for b in found] == [bind.env], found
    published = {p.service: p for p in CAT.published(DEFAULTS, gateway=True)}
    assert published[service].bind_setting == (bind.ansible or bind.env)
    assert published[service].address == found[0].address == "127.0.0.1"


PAIRS = [("127.0.0.1", "127.0.0.1"), ("127.0.0.1", "127.0.0.2"), ("0.0.0.0", "127.0.0.1"), ("127.0.0.1", "0.0.0.0"),
         ("0.0.0.0", "0.0.0.0"), ("::", "::1"), ("::", "127.0.0.1"), ("0.0.0.0", "::"), ("::1", "::1"),
         ("localhost", "127.0.0.1"), ("10.0.0.5", "10.0.0.6"), ("0.0.0.0", "10.0.0.5"), ("[::1]", "::1")]


@pytest.mark.parametrize(("a", "b"), PAIRS)
def test_addresses_overlap_as_compose_preflight_says(a: str, b: str) -> None:
    assert stack.overlap(a, b) == stack.overlap(b, a)
    assert stack.overlap(a, b) == preflight._overlap(a.strip("[]"), b.strip("[]"))


# -- through the real callers -------------------------------------------------------------------------------------
def test_pyinfra_validate_refuses_the_gateway_on_an_engine_s_port() -> None:
    sys.path.insert(0, str(ROOT / "pyinfra"))
    try:
        import gik_settings as gs
    finally:
        sys.path.remove(str(ROOT / "pyinfra"))
    # gs.load: the roles' defaults, the repository's group_vars, then these host settings (pyinfra --data)
    with pytest.raises(gs.SettingsError, match=r"^port clash: gateway_port=8000 is inference_stack_vllm_port's"):
        gs.load({"gateway_enabled": True, "gateway_port": 8000})
    with pytest.raises(gs.SettingsError, match=r"gateway_port=8000 is inference_stack_vllm_port's port too"):
        gs.load({"gateway_enabled": "yes", "gateway_port": "8000"})
    # engines published on 0.0.0.0 (the lab opted out of the key rule): the gateway's loopback address is under it
    wide = {"inference_stack_bind_address": "0.0.0.0", "preflight_allow_unauthenticated": True}
    with pytest.raises(gs.SettingsError, match=r"inference_stack_bind_address=0.0.0.0 covers gateway_bind_address="):
        gs.load({**wide, "gateway_enabled": True, "gateway_port": 8000, "gateway_bind_address": "127.0.0.2"})
    # the repository's group_vars publish the engines on 127.0.0.1: another loopback address is another socket
    assert gs.load({"gateway_enabled": True, "gateway_port": 8000, "gateway_bind_address": "127.0.0.2"}
                   ).value("gateway_port") == 8000
    assert gs.load({"gateway_enabled": False, "gateway_port": 8000}).value("gateway_port") == 8000


def test_the_ansible_settings_check_compares_address_and_port() -> None:
    """roles/preflight's filter (site.yml's first play) on a host's variables."""
    check = _filter("gik_stack_check", "gik_stack")
    assert check({"inference_stack_vllm_port": 11434, "inference_stack_bind_address": "127.0.0.2"})["errors"] == []
    assert check({"inference_stack_vllm_port": "11434", "inference_stack_bind_address": "0.0.0.0"})["errors"] == [
        "port clash: inference_stack_ollama_port=11434 is inference_stack_vllm_port's port too, "
        "inference_stack_bind_address=0.0.0.0 covers OLLAMA_BIND_ADDRESS=127.0.0.1; every engine needs its own port "
        "(or address)"]
    assert check({"inference_stack_llamacpp_port": "8000"})["errors"] == [
        "port clash: inference_stack_llamacpp_port=8000 is inference_stack_vllm_port's port too; every engine needs "
        "its own port"]


@pytest.mark.parametrize("host", [{"gateway_enabled": True}, {"group_names": ["gpu_hosts", "gateway_hosts"]}])
def test_the_ansible_settings_check_refuses_the_gateway_on_an_engine_s_port(host: dict[str, Any]) -> None:
    check = _filter("gik_stack_check", "gik_stack")
    assert check({**host, "gateway_port": 8000})["errors"] == [
        "port clash: gateway_port=8000 is inference_stack_vllm_port's port too, both on 127.0.0.1 "
        f"(gateway_bind_address, inference_stack_bind_address); {GW_WORDS}"]
    assert check({**host, "gateway_port": 8000, "gateway_bind_address": "127.0.0.2"})["errors"] == []
