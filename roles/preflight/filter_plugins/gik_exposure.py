"""The exposure rule (healthchecks/exposure.py) for the first play's settings check:

    hostvars[inventory_hostname] | gik_exposure_refusals(options, preflight_allow_unauthenticated)  -> [lines]

and its one rule for what a key is, for the roles that write (hf_secret) and read (verify) the engines' keys:

    vault_vllm_api_key | gik_key_text             -> the key file's content: whitespace around it removed
    vault_llamacpp_api_key | gik_holds_key('llamacpp')  -> False for None, "", whitespace only (llama.cpp: comments)

One line per engine this host would publish beyond loopback without an API key; the same function compose-preflight
and the pyinfra deploy apply. Keys are only tested for being empty, never shown.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

_KIT = Path(__file__).resolve().parents[3]
if str(_KIT) not in sys.path:
    sys.path.insert(0, str(_KIT))

from healthchecks import exposure  # noqa: E402


def gik_exposure_refusals(host: Mapping[str, Any], options: Mapping[str, Any] | None = None,
                          allow_default: Any = None) -> list[str]:
    """exposure.ansible_refusals: ``options`` are the roles' argument-spec options (the hf_secret role's
    ``hf_secret_<engine>_api_key`` says the roles can give that engine a key)."""
    return exposure.ansible_refusals(host, [str(k) for k in (options or {})], allow_default)


def gik_key_text(value: Any, engine: str = "") -> str:
    """exposure.key_text: the key as hf_secret writes it; a blank value is an empty file (no key); for llama.cpp
    (``engine``) its keys without comment lines."""
    return exposure.key_text(value, str(engine))


def gik_holds_key(value: Any, engine: str) -> bool:
    """exposure.holds_key: whether ``value`` gives ``engine`` a key (None, empty and whitespace-only do not)."""
    return exposure.holds_key(engine, value)


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {"gik_exposure_refusals": gik_exposure_refusals, "gik_key_text": gik_key_text,
                "gik_holds_key": gik_holds_key}
