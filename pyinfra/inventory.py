"""pyinfra inventory from the Ansible inventory: the lab's hosts are listed once, in inventory/hosts.yml.

    pyinfra pyinfra/inventory.py pyinfra/deploy.py                         # inventory/hosts.yml
    GIK_INVENTORY=~/lab/hosts.yml pyinfra pyinfra/inventory.py pyinfra/deploy.py --use-sudo-password
    ANSIBLE_VAULT_PASSWORD_FILE=~/.vault-pass pyinfra pyinfra/inventory.py pyinfra/deploy.py   # vault.yml encrypted

The inventory is read by Ansible itself, through the kit's one inventory reader
(``healthchecks.endpoints.inventory.read_inventory``: ``ansible-inventory --list``), so YAML and INI inventories,
inventory folders, ``group_vars/``, ``host_vars/`` and an encrypted ``vault.yml`` (with Ansible's
``ANSIBLE_VAULT_PASSWORD_FILE``) mean what they mean to ``ansible-playbook``. Every host of the ``gpu_hosts`` group
(children included) becomes a pyinfra host of group ``gpu_hosts``, every host of ``gateway_hosts`` one of group
``gateway_hosts``: its connection (``ansible_host``, ``ansible_user``, ``ansible_port``,
``ansible_ssh_private_key_file``; ``ansible_connection: local`` is ``@local``), its inventory groups
(``gik_group_names``, Ansible's ``group_names``) and its settings. The settings layer of the host's group stays the
lab settings layer (gik_settings.py reads it the same way): ``group_vars/gpu_hosts/`` for a host of gpu_hosts,
``group_vars/gateway_hosts/`` for a host only in gateway_hosts (Ansible gives such a host no gpu_hosts layer: all,
gateway_hosts and its host_vars only), none where the inventory has no such folder; the host's own values (the
inventory file's host and group variables, ``host_vars/``, other groups' group_vars) are host data above it. A
non-root ``ansible_user`` gets sudo (site.yml's ``become: true``), unless ``ansible_become: false``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import gik_settings as gs

from healthchecks.endpoints.inventory import ansible_bool, read_inventory
from healthchecks.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent
INVENTORY = Path(os.path.expanduser(os.environ.get("GIK_INVENTORY", str(ROOT / "inventory" / "hosts.yml"))))
GROUP = os.environ.get("GIK_GROUP", gs.LAB_UPSTREAM_GROUP)
GATEWAY_GROUP = gs.LAB_GATEWAY_GROUP
VAULT_PASSWORD_FILE = os.environ.get("ANSIBLE_VAULT_PASSWORD_FILE") or None
CONNECTION = {"ansible_host": "ssh_hostname", "ansible_user": "ssh_user", "ansible_port": "ssh_port",
              "ansible_ssh_private_key_file": "ssh_key"}


def _fail(message: str) -> SystemExit:
    return SystemExit(f"pyinfra/inventory.py: {message}")


def _layer(group: str) -> tuple[Path, dict[str, Any]]:
    """The inventory's ``group_vars/<group>`` (a folder, else ``<group>.yml``; the folder's path when neither
    exists: no layer) and its settings as Ansible reads them."""
    folder = (INVENTORY if INVENTORY.is_dir() else INVENTORY.parent) / "group_vars" / group
    if not folder.exists() and (folder.parent / f"{group}.yml").is_file():
        folder = folder.parent / f"{group}.yml"
    try:
        return folder, (gs.group_vars_layer(folder, VAULT_PASSWORD_FILE) if folder.exists() else {})
    except gs.SettingsError as e:
        raise _fail(str(e)) from None


def _load() -> dict[str, list[tuple[str, dict[str, Any]]]]:
    """{GROUP: [(name, data)], GATEWAY_GROUP: [(name, data)]}, from one ``ansible-inventory --list``."""
    if not INVENTORY.exists():
        raise _fail(f"no Ansible inventory at {INVENTORY} (set GIK_INVENTORY)")
    try:
        every = read_inventory(INVENTORY, vault_password_file=VAULT_PASSWORD_FILE)
    except ConfigError as e:
        raise _fail(str(e)) from None
    member = {h.name: h.groups | set(h.vars.get("group_names") or []) for h in every}
    found = [h for h in every if GROUP in member[h.name] or GATEWAY_GROUP in member[h.name]]
    layers: dict[str, tuple[Path, dict[str, Any]]] = {}
    groups: dict[str, list[tuple[str, dict[str, Any]]]] = {GROUP: [], GATEWAY_GROUP: []}
    for inv_host in found:
        name, hostvars = inv_host.name, inv_host.vars
        # the settings layer of the host's group (group_vars/gpu_hosts; for a host only in gateway_hosts,
        # group_vars/gateway_hosts) comes in below a settings file (gik_settings.py); what this host sets
        # otherwise (or differently) is host data
        group = GROUP if GROUP in member[name] else GATEWAY_GROUP
        if group not in layers:
            layers[group] = _layer(group)
        folder, layer = layers[group]
        # (always named, present or not: a missing folder is no layer, never the kit's own inventory/group_vars)
        data: dict[str, Any] = {"gik_group_vars": str(folder), "gik_inventory_name": name,
                                "gik_group_names": sorted(member[name] - {"all", "ungrouped"})}
        for key, value in hostvars.items():
            if key in layer and layer[key] == value and key not in CONNECTION:
                continue
            data[CONNECTION.get(key, key)] = value
        if isinstance(data.get("ssh_port"), str) and str(data["ssh_port"]).isdigit():
            data["ssh_port"] = int(data["ssh_port"])  # an INI inventory gives text
        common = str(hostvars.get("ansible_ssh_common_args", ""))
        if "StrictHostKeyChecking=no" in common:
            data["ssh_strict_host_key_checking"] = "no"
        if "UserKnownHostsFile=/dev/null" in common:
            data["ssh_known_hosts_file"] = "/dev/null"
        try:
            become = ansible_bool(hostvars.get("ansible_become", True), f"{name}: ansible_become")
        except ConfigError as e:
            raise _fail(str(e)) from None
        if hostvars.get("ansible_connection") == "local":
            data["ansible_connection"] = "local"
            name = "@local"
        elif str(hostvars.get("ansible_user", "root")) != "root" and become:
            data["_sudo"] = True  # site.yml runs with become: true
        if VAULT_PASSWORD_FILE:
            data["gik_vault_password_file"] = VAULT_PASSWORD_FILE
        for group in (GROUP, GATEWAY_GROUP):
            if group in member[inv_host.name]:
                groups[group].append((name, data))
    if not groups[GROUP] and not groups[GATEWAY_GROUP]:
        raise _fail(f"no host in group {GROUP} of {INVENTORY}")
    return groups


_groups = _load()
gpu_hosts = _groups[GROUP]
gateway_hosts = _groups[GATEWAY_GROUP]
