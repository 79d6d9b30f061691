"""pyinfra's port clash check knows the lab gateway: a host in gpu_hosts and gateway_hosts publishes the lab gateway's
port beside its engines' even without gateway_enabled, so gateway_port on an engine's port (on an overlapping
address) stops the deploy naming both settings, as the Ansible settings check (roles/preflight's gik_stack_check,
which reads group_names) stops it. A host only in gateway_hosts runs no engines: nothing clashes there."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

pytestmark = pytest.mark.unit
ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "pyinfra"))

import gik_settings as gs  # noqa: E402

# the lab gateway (gateway_port) on llama.cpp's port, both on 0.0.0.0
CLASH = {"inference_stack_engines": ["llamacpp"], "inference_stack_llamacpp_port": 8080,
         "inference_stack_bind_address": "0.0.0.0", "gateway_port": 8080, "gateway_bind_address": "0.0.0.0"}
BOTH = ["gateway_hosts", "gpu_hosts"]


def _ansible_check(host: dict[str, Any]) -> list[str]:
    """roles/preflight's filter gik_stack_check (the first play's settings check) for these host variables."""
    path = ROOT / "roles" / "preflight" / "filter_plugins" / "gik_stack.py"
    spec = importlib.util.spec_from_file_location("gik_stack_filters", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return list(module.gik_stack_check(host)["errors"])


def _load(groups: list[str] | None, **extra: Any) -> gs.Settings:
    return gs.load({**CLASH, **extra}, group_vars="/nonexistent", groups=groups)


def test_a_host_in_both_groups_refuses_the_clash_as_ansible_does() -> None:
    ansible = _ansible_check({**CLASH, "group_names": BOTH})
    assert len(ansible) == 1 and "gateway_port=8080" in ansible[0], ansible
    with pytest.raises(gs.SettingsError) as e:
        _load(BOTH)
    assert str(e.value) == ansible[0]
    assert "gateway_port" in str(e.value) and "inference_stack_llamacpp_port" in str(e.value)


def test_gateway_enabled_still_counts_and_a_plain_engine_host_does_not() -> None:
    with pytest.raises(gs.SettingsError, match="gateway_port=8080"):
        _load(["gpu_hosts"], gateway_enabled=True)
    assert _ansible_check({**CLASH, "group_names": ["gpu_hosts"]}) == []
    assert _load(["gpu_hosts"]).value("gateway_port") == 8080  # no gateway on that host: no clash
    assert _load(None).value("gateway_port") == 8080  # @local without an inventory: gateway_enabled decides


def test_a_gateway_only_host_has_no_engine_to_clash_with() -> None:
    assert _load(["gateway_hosts"]).value("gateway_port") == 8080


def test_the_inventory_hands_the_groups_to_the_check(tmp_path: Path) -> None:
    """Through pyinfra/inventory.py's host data (gik_group_names), as deploy.py's lab gateway loads each host."""
    inv = tmp_path / "hosts.yml"
    inv.write_text(yaml.safe_dump({"all": {"children": {
        "gpu_hosts": {"hosts": {"gw": {"ansible_host": "10.3.0.1", **CLASH}}},
        "gateway_hosts": {"hosts": {"gw": None}}}}}))
    spec = importlib.util.spec_from_file_location("gik_clash_inventory", ROOT / "pyinfra" / "inventory.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    mp = pytest.MonkeyPatch()
    mp.setenv("GIK_INVENTORY", str(inv))
    try:
        spec.loader.exec_module(module)
    finally:
        mp.undo()
    (_name, data), = module.gpu_hosts
    assert data["gik_group_names"] == BOTH
    with pytest.raises(gs.SettingsError, match="port clash: gateway_port=8080"):
        gs.load_host_data(data)
