"""Filters that hand the kit's stack catalogue (healthchecks/stack.yml, healthchecks/stack.py) to the roles.

    gik_stack_check(hostvars[inventory_hostname], options)  -> {"values": {...converted...}, "errors": [...]}
    gik_verify_commands({...})                               -> {"healthcheck": argv, "smoke-bench": argv}
    gik_gateway_url(address, port, tls)                      -> "http(s)://address:port"
    gik_verify_unreachable(hostvars[h], address, mode)       -> ["why the controller cannot verify it", ...]
    gik_verify_addresses(hostvars[h], address, mode)         -> {"vllm": "10.0.0.5", "gateway": ...}

The conversion and the verify command line are the same Python functions the pyinfra deployer and
compose-preflight use; this file only loads them from the kit's checkout (roles/<role>/filter_plugins/../../..).
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

_KIT = Path(__file__).resolve().parents[3]
if str(_KIT) not in sys.path:
    sys.path.insert(0, str(_KIT))

from healthchecks import stack  # noqa: E402


def gik_stack_check(host: Mapping[str, Any], options: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Every catalogue setting the host has, converted by its catalogue type and checked against its range (and
    every other role setting of ``options``, the roles' argument specs, converted by its type); the values that
    were text (INI inventory, ``-e``) and one line per bad setting."""
    catalogue = stack.load()
    known = catalogue.by_ansible()
    values: dict[str, Any] = {}
    errors: list[str] = []
    given: dict[str, Any] = {}
    for name, opt in {**dict(options or {}), **known}.items():
        if name not in host:
            continue
        raw = stack.plain(host[name])
        setting = known.get(name) or stack.Setting(id=name, type=str(dict(opt).get("type", "str")),
                                                   elements=dict(opt).get("elements"))
        if setting.type not in stack.TYPES:
            continue
        try:
            out = setting.convert(raw, name=name)
        except stack.SettingError as e:
            errors.append(str(e))
            continue
        given[name] = out
        if out != raw or type(out) is not type(raw):
            values[name] = out
    if not errors:
        # the gateway's port counts where this host runs it (gateway_enabled, or a member of gateway_hosts)
        gateway = stack.runs_gateway(stack.plain({k: host[k] for k in ("gateway_enabled", "group_names") if k in host}))
        errors = catalogue.port_clashes({**catalogue.ansible_defaults(), **given}, gateway=gateway)
    return {"values": values, "errors": errors}


def gik_verify_commands(params: Mapping[str, Any]) -> dict[str, list[str]]:
    """stack.verify_commands: the one healthcheck / smoke-bench command line both deployers run."""
    return stack.verify_commands(**stack.plain(params))


def gik_gateway_url(address: str, port: Any, tls: Any = False) -> str:
    """stack.gateway_url: the gateway's URL at the address the controller reaches its host at."""
    return stack.gateway_url(str(address), stack.plain(port), tls=bool(stack.plain(tls)))


def gik_verify_unreachable(host: Mapping[str, Any], address: str, mode: str = "") -> list[str]:
    """stack.unreachable: what the host publishes on loopback only while the controller reaches it elsewhere.
    ``mode``: "host" (its own gateway is verified too), "lab" (the lab gateway alone), "" (engines only). The
    host's settings are converted first (an INI inventory's text); a bad one is the first play's to name."""
    values, _ = stack.load().convert_all(stack.plain(dict(host)), gateway=mode in ("host", "lab"))
    return stack.unreachable(values, str(address), gateway=mode == "host", lab_gateway=mode == "lab",
                             host=str(host.get("inventory_hostname", "")))


def gik_verify_addresses(host: Mapping[str, Any], address: str, mode: str = "") -> dict[str, str]:
    """stack.verify_addresses: per service of the host, where verify reaches it (its bind address where that is one
    address, else the host's)."""
    values, _ = stack.load().convert_all(stack.plain(dict(host)), gateway=mode in ("host", "lab"))
    return stack.verify_addresses(values, str(address), gateway=mode in ("host", "lab"))


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {"gik_stack_check": gik_stack_check, "gik_verify_commands": gik_verify_commands,
                "gik_gateway_url": gik_gateway_url, "gik_verify_unreachable": gik_verify_unreachable,
                "gik_verify_addresses": gik_verify_addresses}
