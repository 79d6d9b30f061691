"""The exposure rule (healthchecks/exposure.py) for the first play's settings check:

    hostvars[inventory_hostname] | gik_exposure_refusals(options, preflight_allow_unauthenticated)  -> [lines]

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


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {"gik_exposure_refusals": gik_exposure_refusals}
