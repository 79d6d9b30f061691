"""Docker restarts at most once per run: every role that changes Docker's configuration notifies the docker
role's one handler (flushed once), and no task restarts Docker itself."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from conftest import flat_tasks

pytestmark = pytest.mark.unit
ROLES = Path(__file__).resolve().parents[2] / "roles"
RESTART_MODULES = {"ansible.builtin.service", "ansible.builtin.systemd_service", "ansible.builtin.systemd"}


def test_one_docker_restart_handler_and_every_notify_uses_it() -> None:
    handlers = [(f, t) for f in ROLES.glob("*/handlers/*.yml") for t in flat_tasks(yaml.safe_load(f.read_text()))]
    docker_handlers = [t for _, t in handlers if any(
        (t.get(m) or {}).get("name") == "docker" for m in RESTART_MODULES)]
    assert [h["name"] for h in docker_handlers] == ["Restart docker"]
    notified = set()
    for f in ROLES.glob("*/tasks/*.yml"):
        for t in flat_tasks(yaml.safe_load(f.read_text())):
            n = t.get("notify")
            notified |= set(n if isinstance(n, list) else [n] if n else [])
            for m in RESTART_MODULES:
                args = t.get(m) or {}
                assert not (args.get("name") == "docker" and args.get("state") in ("restarted", "reloaded")), (
                    f"{f}: {t.get('name')} restarts Docker outside the handler")
    assert notified == {"Restart docker"}, notified
    flushes = [t for f in (ROLES / "docker" / "tasks").glob("*.yml") for t in flat_tasks(yaml.safe_load(f.read_text()))
               if t.get("ansible.builtin.meta") == "flush_handlers"]
    assert len(flushes) == 1
