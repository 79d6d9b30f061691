"""Every conditional on a boolean setting goes through `| bool`: `-e inference_stack_gpu=false` on the command
line is the string "false", which ansible-core 2.19 refuses as a conditional (and older versions read as true)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

pytestmark = pytest.mark.unit
ROLES = Path(__file__).resolve().parents[2] / "roles"


def _bool_settings() -> set[str]:
    names = {"inference_stack_gpu"}
    for spec in ROLES.glob("*/meta/argument_specs.yml"):
        for entry in yaml.safe_load(spec.read_text())["argument_specs"].values():
            names |= {k for k, v in entry["options"].items() if v.get("type") == "bool"}
    return names


def _conditions(tasks: Any) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    for task in tasks or []:
        if not isinstance(task, dict):
            continue
        for key in ("when", "failed_when", "changed_when"):
            if key in task:
                vals = task[key] if isinstance(task[key], list) else [task[key]]
                out += [(str(task.get("name")), str(v)) for v in vals]
        that = (task.get("ansible.builtin.assert") or {}).get("that")
        if that is not None:
            out += [(str(task.get("name")), str(v)) for v in (that if isinstance(that, list) else [that])]
        for key in ("block", "rescue", "always"):
            out += _conditions(task.get(key))
    return out


def test_boolean_settings_are_cast_in_every_conditional() -> None:
    names = _bool_settings()
    assert {"nvidia_driver_skip_reboot", "docker_manage_service", "verify_smoke_bench"} <= names
    bare = []
    files = [*ROLES.glob("*/tasks/*.yml"), *ROLES.glob("*/handlers/*.yml")]
    for f in files:
        for task, cond in _conditions(yaml.safe_load(f.read_text())):
            for name in names:
                for m in re.finditer(rf"\b{name}\b((\s*\|\s*default\([^()]*\))?)", cond):
                    rest = cond[m.end():]
                    if not re.match(r"\s*\|\s*bool\b", rest):
                        bare.append(f"{f.relative_to(ROLES)}: {task}: {cond}")
    assert not bare, "conditionals without | bool:\n" + "\n".join(bare)
