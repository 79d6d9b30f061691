"""Filters that hand the gateway's config to the role: the same renderer (healthchecks/gateway.py) that
``python -m healthchecks.gateway`` runs for compose users, loaded from the kit's checkout
(roles/gateway/filter_plugins/../../..).

    gik_gateway_config(spec)  -> LiteLLM config.yaml text
        spec: {"options": {gateway_* Ansible name: value}, "engines": [...], "models": {engine: name}}   this host
          or  {"options": {...}, "hosts": {inventory name: {address, engines, ports, models, settings, local,
                                                                gateway_port, tls}}}                     the lab
        A lab host's engine the gateway cannot reach (published on loopback only, no gateway of its own) fails the
        filter naming the bind setting and gateway_enabled, as a host gateway published on loopback fails naming
        gateway_bind_address: no engine of the lab is left out silently.
    gik_gateway_keys(engines) -> [{"engine", "secret", "env"}]: the engines' key secrets the gateway reads
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ansible.errors import AnsibleFilterError

_KIT = Path(__file__).resolve().parents[3]
if str(_KIT) not in sys.path:
    sys.path.insert(0, str(_KIT))

from healthchecks import gateway, stack  # noqa: E402


def gik_gateway_config(spec: Mapping[str, Any]) -> str:
    spec = stack.plain(spec)
    try:
        opts = gateway.Options.from_settings(spec.get("options") or {})
        if spec.get("hosts") is not None:
            if not spec["hosts"]:
                raise gateway.GatewayError("the lab gateway's upstream group has no host")
            # the gateway runs in its compose project's own network: 127.0.0.1 there is the container itself.
            # No ``skipped`` list: an engine it cannot reach is an error naming the setting, never dropped
            ups = gateway.lab_upstreams(spec["hosts"], loopback_reachable=False)
            if not ups:
                raise gateway.GatewayError(f"the lab gateway's hosts ({', '.join(map(str, spec['hosts']))}) serve "
                                           "no engine (inference_stack_engines)")
        else:
            ups = gateway.host_upstreams(spec.get("engines") or [], spec.get("models") or {})
        return gateway.to_yaml(gateway.render(ups, opts))
    except gateway.GatewayError as e:
        raise AnsibleFilterError(f"gateway: {e}") from None


def gik_gateway_keys(engines: Sequence[str] | None = None) -> list[dict[str, str]]:
    """Every engine of the catalogue (or of ``engines``) that takes a key: its compose secret and the .env variable
    of its key file (VLLM_API_KEY_FILE -> secret vllm_api_key)."""
    cat = stack.load()
    out = []
    for name in engines if engines is not None else list(cat.engines):
        name = str(name)
        if name not in cat.engines or name == gateway.SELF:
            continue
        env = gateway.key_env(name, cat)
        if env:
            out.append({"engine": name, "secret": env.lower(), "env": f"{env}_FILE"})
    return out


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {"gik_gateway_config": gik_gateway_config, "gik_gateway_keys": gik_gateway_keys}
