"""The one reader of Ansible inventories (healthcheck ``--inventory``, pyinfra's inventory, the testinfra suite).

:func:`read_inventory` asks Ansible itself (``ansible-inventory --list``), so INI and YAML inventories, inventory
folders, ``group_vars/`` and ``host_vars/`` and group nesting mean exactly what they mean to ``ansible-playbook``.
:func:`ansible_bool` reads a boolean as Ansible does. :func:`from_inventory` turns the hosts into endpoints.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..engines import CATALOGUE, DEPLOYED
from ..errors import ConfigError
from ..numbers import ascii_uint
from .url import Endpoint, normalise_url

INV_ENGINES = "inference_stack_engines"


@dataclass(frozen=True)
class InventoryHost:
    """One host of an Ansible inventory, as ``ansible-inventory --list`` gives it."""

    name: str
    # its variables with Ansible's precedence applied: the inventory's host and group vars, group_vars/ and
    # host_vars/ beside the inventory. Values are as Ansible parsed them: an INI [group:vars] value is text
    # ("false", "8001"), Jinja expressions are not rendered, an inline !vault value stays encrypted.
    vars: dict[str, Any]
    groups: frozenset[str]  # every group the host is in, parents of its groups included ("all" too)


def ansible_inventory_exe() -> str:
    """``ansible-inventory`` from the kit's own environment, else from PATH; ConfigError when there is none."""
    beside = Path(sys.executable).parent / "ansible-inventory"  # same venv as the kit, even if not on PATH
    exe = str(beside) if beside.is_file() else shutil.which("ansible-inventory")
    if exe is None:
        raise ConfigError("--inventory needs ansible-inventory on PATH (pip install 'gpu-inference-kit[ansible]')")
    return exe


def read_inventory(path: str | Path, *, group: str | None = None, host: str | None = None,
                   vault_password_file: str | Path | None = None) -> list[InventoryHost]:
    """Every host of the inventory at ``path`` (a file or folder), sorted by name; only the hosts of ``group``
    (children included) and/or the one named ``host`` when given. An empty list when none matches. A missing
    inventory, a missing ``ansible-inventory`` or one Ansible cannot read is a one-line ConfigError.

    Encrypted files (Ansible Vault: ``group_vars/gpu_hosts/vault.yml``) are read as ``ansible-playbook`` reads them:
    with ``vault_password_file`` (``--vault-password-file``: a file holding the password, or a script printing it)
    or Ansible's own ``ANSIBLE_VAULT_PASSWORD_FILE`` / ansible.cfg setting. With ``vault_password_file`` given,
    inline ``!vault`` values are decrypted too (otherwise they stay encrypted). No password, or a wrong one, is a
    one-line ConfigError naming it; no secret is ever in a message."""
    p = Path(path)
    if not p.exists():
        raise ConfigError(f"inventory {p} does not exist")
    argv = [ansible_inventory_exe(), "-i", str(p), "--list"]
    if vault_password_file:
        vpf = Path(os.path.expanduser(str(vault_password_file)))
        if not vpf.is_file():
            raise ConfigError(f"vault password file {vpf} does not exist")
        argv += ["--vault-password-file", str(vpf)]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=120, env={**os.environ, "ANSIBLE_NOCOLOR": "1"})
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
        if "no vault secrets found" in last:
            raise ConfigError(f"ansible-inventory could not read {p}: it holds a file encrypted with Ansible Vault "
                              "and no vault password was given (a vault password file: ANSIBLE_VAULT_PASSWORD_FILE "
                              "or --vault-password-file)")
        if "Decryption failed" in last:
            raise ConfigError(f"ansible-inventory could not read {p}: the vault password does not decrypt its "
                              "encrypted file (Ansible Vault: wrong vault password file)")
        raise ConfigError(f"ansible-inventory could not read {p}: {last}")
    try:
        data = json.loads(proc.stdout)
        hostvars = data["_meta"]["hostvars"]
    except (ValueError, KeyError, TypeError):
        raise ConfigError(f"ansible-inventory gave no host variables for {p}") from None
    groups = _groups_of_hosts(data)
    for name in data.get("all", {}).get("hosts") or [] if isinstance(data.get("all"), dict) else []:
        groups.setdefault(str(name), set())  # ungrouped hosts listed under all
    names = {str(k) for k in hostvars} if isinstance(hostvars, dict) else set()
    names |= set(groups)
    out = []
    for name in sorted(names):
        hv = hostvars.get(name) if isinstance(hostvars, dict) else None
        hv = hv if isinstance(hv, dict) else {}
        member = groups.get(name, set()) | {"all"}
        if group and group not in member | set(hv.get("group_names") or []):
            continue
        if host and host != name:
            continue
        out.append(InventoryHost(name=name, vars=dict(hv), groups=frozenset(member)))
    if vault_password_file and any(_has_inline_vault(h.vars) for h in out):
        vault = _vault(Path(os.path.expanduser(str(vault_password_file))))
        out = [InventoryHost(name=h.name, vars=_decrypt(h.vars, vault, p), groups=h.groups) for h in out]
    return out


def _has_inline_vault(value: Any) -> bool:
    if isinstance(value, dict):
        return "__ansible_vault" in value or any(_has_inline_vault(v) for v in value.values())
    if isinstance(value, list):
        return any(_has_inline_vault(v) for v in value)
    return False


def _vault(password_file: Path) -> Any:
    """Ansible's own VaultLib with the password file's secret (a script is run, as Ansible runs it)."""
    from ansible.errors import AnsibleError
    from ansible.parsing.dataloader import DataLoader
    from ansible.parsing.vault import VaultLib, get_file_vault_secret

    try:
        secret = get_file_vault_secret(filename=str(password_file), vault_id="default", loader=DataLoader())
        secret.load()
    except AnsibleError as e:
        raise ConfigError(f"vault password file {password_file}: {str(e).splitlines()[0]}") from None
    return VaultLib([("default", secret)])


def _decrypt(value: Any, vault: Any, inventory: Path) -> Any:
    """Inline ``!vault`` values (``{"__ansible_vault": "$ANSIBLE_VAULT;..."}`` in ``--list``) decrypted."""
    from ansible.errors import AnsibleError

    if isinstance(value, dict):
        if set(value) == {"__ansible_vault"}:
            try:
                return vault.decrypt(str(value["__ansible_vault"])).decode()
            except AnsibleError:
                raise ConfigError(f"{inventory}: the vault password does not decrypt an inline !vault value "
                                  "(wrong vault password file)") from None
        return {k: _decrypt(v, vault, inventory) for k, v in value.items()}
    if isinstance(value, list):
        return [_decrypt(v, vault, inventory) for v in value]
    return value


def _groups_of_hosts(data: Mapping[str, Any]) -> dict[str, set[str]]:
    """host -> every group it belongs to, children included (``--list`` has no ``group_names`` in hostvars)."""
    def members(group: str, seen: frozenset[str]) -> set[str]:
        node = data.get(group)
        if not isinstance(node, dict) or group in seen:
            return set()
        found = {str(h) for h in node.get("hosts") or []}
        for child in node.get("children") or []:
            found |= members(str(child), seen | {group})
        return found
    groups: dict[str, set[str]] = {}
    for group in data:
        if group != "_meta":
            for host in members(group, frozenset()):
                groups.setdefault(host, set()).add(group)
    return groups


# The one reader of Ansible booleans: ansible.module_utils.parsing.convert_bool.boolean (strict), which role
# argument_specs (type: bool) and module options use. BOOLEANS_TRUE = ('y', 'yes', 'on', '1', 'true', 't', 1,
# 1.0, True), BOOLEANS_FALSE = ('n', 'no', 'off', '0', 'false', 'f', 0, 0.0, False); text is lower-cased and
# stripped first (ansible-core 2.19, lib/ansible/module_utils/parsing/convert_bool.py). INI inventories and -e
# hand every value over as text, so ``inference_stack_gpu=false`` arrives as "false". (The Jinja ``bool`` filter,
# ansible.plugins.filter.core.to_bool, accepts fewer words: "y"/"t" there are deprecated and read as false; the
# preflight role converts every setting by its type first, so the filter only ever sees real booleans.)
BOOL_TRUE = frozenset({"y", "yes", "on", "1", "true", "t"})
BOOL_FALSE = frozenset({"n", "no", "off", "0", "false", "f"})


def ansible_bool(value: Any, what: str) -> bool:
    """``value`` read as Ansible reads a boolean; anything else is a ConfigError naming ``what``."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        low = value.strip().lower()
        if low in BOOL_TRUE:
            return True
        if low in BOOL_FALSE:
            return False
    raise ConfigError(f"{what} must be a boolean (true/false, yes/no, on/off, 1/0), not {value!r}")


def from_inventory(path: str | Path, group: str | None = None, host: str | None = None) -> list[Endpoint]:
    """Hosts x enabled engines x ports from an Ansible inventory (roles' defaults fill the gaps)."""
    p = Path(path)
    found: list[Endpoint] = []
    for inv_host in read_inventory(p, group=group, host=host):
        name, hv = inv_host.name, inv_host.vars
        engines = hv.get(INV_ENGINES, list(DEPLOYED))
        if isinstance(engines, str):  # an INI [vars] section hands the value over as a string: "vllm,ollama"
            engines = [e for e in (x.strip().strip("'\"") for x in engines.strip().strip("[]").split(",")) if e]
        if not isinstance(engines, list):
            raise ConfigError(f"{name}: {INV_ENGINES} must be a list, not {engines!r}")
        address = str(hv.get("healthcheck_address") or hv.get("ansible_host") or name).strip()
        if hv.get("ansible_connection") == "local" and "ansible_host" not in hv:
            address = "127.0.0.1"
        if not address or any(c in address for c in "/?#@ \t") or address.count("]") > 1:
            raise ConfigError(f"{name}: address {address!r} (healthcheck_address / ansible_host) is not a host name "
                              "or IP address")
        if ":" in address and not address.startswith("["):  # an IPv6 address in a URL goes in brackets
            address = f"[{address}]"
        for engine in engines:
            spec = CATALOGUE.get(engine)
            if spec is None or not spec.deployed or spec.ansible_port is None:
                raise ConfigError(f"{name}: unknown engine {engine!r} in {INV_ENGINES}")
            raw_port: Any = hv.get(spec.ansible_port, spec.default_port)
            text = str(raw_port).strip() if isinstance(raw_port, int | str) and not isinstance(raw_port, bool) else ""
            port = ascii_uint(text, 5)
            if port is None or not 1 <= port <= 65535:
                raise ConfigError(f"{name}: {spec.ansible_port} must be a port number (1-65535), not {raw_port!r}")
            model: Any = hv.get(spec.ansible_model) if spec.ansible_model else None
            if isinstance(model, int | float) and not isinstance(model, bool):
                model = str(model)  # YAML reads a model named 7 as a number
            if model is not None and not (isinstance(model, str) and model.strip()):
                raise ConfigError(f"{name}: {spec.ansible_model} must be a model name, not {model!r}")
            gpu = hv.get("inference_stack_gpu")
            expect_gpu = None if gpu is None else ansible_bool(gpu, f"{name}: inference_stack_gpu")
            found.append(Endpoint(
                engine=engine,
                url=_inventory_url(name, address, port),
                model=model,
                name=f"{name}/{engine}",
                expect_gpu=expect_gpu,
                meta={"host": name},
            ))
    if not found:
        where = (f" group {group}" if group else "") + (f" host {host}" if host else "")
        raise ConfigError(f"no hosts with engines in inventory {p}{where}")
    return found


def _inventory_url(name: str, address: str, port: int) -> str:
    try:
        return normalise_url(f"http://{address}:{port}")
    except ConfigError as exc:
        raise ConfigError(f"{name}: {exc.reason}") from None

