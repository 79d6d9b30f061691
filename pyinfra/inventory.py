"""pyinfra inventory from the Ansible inventory: the lab's hosts are listed once, in inventory/hosts.yml.

    pyinfra pyinfra/inventory.py pyinfra/deploy.py                         # inventory/hosts.yml
    GIK_INVENTORY=~/lab/hosts.yml pyinfra pyinfra/inventory.py pyinfra/deploy.py --sudo --user admin

Every host of the ``gpu_hosts`` group (children included) becomes a pyinfra host of group ``gpu_hosts``: its
connection (``ansible_host``, ``ansible_user``, ``ansible_port``, ``ansible_ssh_private_key_file``;
``ansible_connection: local`` is ``@local``) and its settings (the inventory's host and group variables, then
``host_vars/<host>.yml``).
The inventory's ``group_vars/gpu_hosts/`` is the lab settings layer, as it is for Ansible. A non-root
``ansible_user`` gets sudo (site.yml's ``become: true``), unless ``ansible_become: false``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
INVENTORY = Path(os.path.expanduser(os.environ.get("GIK_INVENTORY", str(ROOT / "inventory" / "hosts.yml"))))
GROUP = os.environ.get("GIK_GROUP", "gpu_hosts")
CONNECTION = {"ansible_host": "ssh_hostname", "ansible_user": "ssh_user", "ansible_port": "ssh_port",
              "ansible_ssh_private_key_file": "ssh_key"}


class _Loader(yaml.SafeLoader):
    """Inline ``!vault`` values cannot be read without Ansible Vault: they come through as None."""


_Loader.add_constructor("!vault", lambda loader, node: None)


def _hosts(group: dict[str, Any] | None, inherited: dict[str, Any], inside: bool) -> dict[str, dict[str, Any]]:
    group = group or {}
    merged = {**inherited, **(group.get("vars") or {})}
    out: dict[str, dict[str, Any]] = {}
    if inside:
        for name, hostvars in (group.get("hosts") or {}).items():
            out[name] = {**merged, **(hostvars or {})}
    for child_name, child in (group.get("children") or {}).items():
        out.update(_hosts(child, merged, inside or child_name == GROUP))
    return out


def _load() -> list[tuple[str, dict[str, Any]]]:
    if not INVENTORY.is_file():
        raise SystemExit(f"pyinfra/inventory.py: no Ansible inventory at {INVENTORY} (set GIK_INVENTORY)")
    not_yaml = (f"pyinfra/inventory.py: {INVENTORY} is not a YAML inventory (the pyinfra deployer reads YAML "
                f"only; convert an INI one with: ansible-inventory -i {INVENTORY} --list --yaml --export > hosts.yml)")
    try:
        doc = yaml.load(INVENTORY.read_text(), Loader=_Loader) or {}
    except yaml.YAMLError:
        raise SystemExit(not_yaml) from None
    if not isinstance(doc, dict) or not all(isinstance(v, dict | None) for v in doc.values()):
        raise SystemExit(not_yaml)
    group_vars = INVENTORY.parent / "group_vars" / GROUP
    hosts = []
    for name, hostvars in _hosts(doc.get("all", doc), {}, GROUP == "all").items():
        host_file = INVENTORY.parent / "host_vars" / f"{name}.yml"
        if host_file.is_file():
            hostvars = {**hostvars, **(yaml.load(host_file.read_text(), Loader=_Loader) or {})}
        data: dict[str, Any] = {"gik_group_vars": str(group_vars)} if group_vars.exists() else {}
        for key, value in hostvars.items():
            data[CONNECTION.get(key, key)] = value
        common = str(hostvars.get("ansible_ssh_common_args", ""))
        if "StrictHostKeyChecking=no" in common:
            data["ssh_strict_host_key_checking"] = "no"
        if "UserKnownHostsFile=/dev/null" in common:
            data["ssh_known_hosts_file"] = "/dev/null"
        if hostvars.get("ansible_connection") == "local":
            data["ansible_connection"] = "local"
            name = "@local"
        elif str(hostvars.get("ansible_user", "root")) != "root" and hostvars.get("ansible_become", True):
            data["_sudo"] = True  # site.yml runs with become: true
        hosts.append((name, data))
    if not hosts:
        raise SystemExit(f"pyinfra/inventory.py: no host in group {GROUP} of {INVENTORY}")
    return hosts


gpu_hosts = _load()
