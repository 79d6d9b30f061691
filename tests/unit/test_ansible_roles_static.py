"""Static checks of the roles' YAML where a real run cannot show the defect on this machine (no systemd, no GPU):
which handlers reload systemd, which package states can move an installed driver."""

from __future__ import annotations

import itertools
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import flat_tasks

pytestmark = pytest.mark.unit
ROLES = Path(__file__).resolve().parents[2] / "roles"
SYSTEMD = ("ansible.builtin.systemd_service", "ansible.builtin.systemd", "systemd_service", "systemd")


def _all(kind: str) -> list[tuple[Path, dict[str, Any]]]:
    return [(f, t) for f in sorted(ROLES.glob(f"*/{kind}/*.yml")) for t in flat_tasks(yaml.safe_load(f.read_text()))]


def _reloads(t: dict[str, Any]) -> bool:
    if any(isinstance(t.get(m), dict) and str(t[m].get("daemon_reload", "")).lower() in ("true", "yes")
           for m in SYSTEMD):
        return True
    cmd = t.get("ansible.builtin.command") or t.get("ansible.builtin.shell") or ""
    return "daemon-reload" in str(cmd)


def _listens(t: dict[str, Any]) -> set[str]:
    lst = t.get("listen") or []
    return {t["name"], *([lst] if isinstance(lst, str) else lst)}


def _notifies(t: dict[str, Any]) -> set[str]:
    n = t.get("notify") or []
    return set([n] if isinstance(n, str) else n)


def test_a_daemon_json_change_never_reloads_systemd() -> None:
    """`systemctl daemon-reload` while GPU containers run cuts them off their GPUs (NVML loss): the handlers a
    daemon.json change (the template or nvidia-ctk) notifies restart Docker; a reload runs only for a changed
    systemd unit file, guarded by that task's registered result."""
    tasks = _all("tasks")
    registered: dict[str, list[dict[str, Any]]] = {}
    for _, t in tasks:
        if t.get("register"):
            registered.setdefault(t["register"], []).append(t)
    daemon_json = [t for _, t in tasks if "daemon.json" in str(t.get("ansible.builtin.template", {}).get("dest", ""))
                   or "nvidia-ctk runtime configure" in str(t.get("ansible.builtin.command", ""))]
    assert len(daemon_json) == 2 and all(_notifies(t) for t in daemon_json)
    reload_handlers = [h for _, h in _all("handlers") if _reloads(h)]
    for t in daemon_json:
        for h in reload_handlers:
            if not _notifies(t) & _listens(h):
                continue
            when = h.get("when") or []
            guards = set(re.findall(r"(\w+)\s*(?:\|\s*default\([^)]*\)\s*)?is changed", " ".join(
                [when] if isinstance(when, str) else when)))
            assert guards, f"handler {h['name']!r} reloads systemd on every {t['name']!r} change"
            assert t.get("register") not in guards
            for g in guards:
                writers = registered.get(g, [])
                assert writers and all(str((w.get("ansible.builtin.template") or w.get("ansible.builtin.copy")
                                            or {}).get("dest", "")).startswith("/etc/systemd/") for w in writers), (
                    f"handler {h['name']!r} reloads systemd when {g} changed, which is not a systemd unit file")
    for f, t in tasks:
        assert not _reloads(t), f"{f}: {t.get('name')} reloads systemd outside a guarded handler"


def test_no_package_task_upgrades_on_a_re_run_unless_opted_in() -> None:
    """A re-run must not move a serving host to a newer driver (or toolkit, Docker) release that was published
    since the last run: a newer NVIDIA driver means a reboot. Package tasks install `present`; `latest` only
    behind a role's *_allow_upgrade setting, which defaults to false."""
    pkg_modules = ("ansible.builtin.apt", "ansible.builtin.dnf", "ansible.builtin.package", "ansible.builtin.yum")
    seen = 0
    for f, t in _all("tasks"):
        for m in pkg_modules:
            args = t.get(m)
            if not isinstance(args, dict) or "state" not in args:
                continue
            seen += 1
            state = str(args["state"])
            assert state != "latest", f"{f}: {t['name']} upgrades on every run"
            if "{{" in state:
                flags = re.findall(r"(\w+_allow_upgrade)\b", state)
                assert flags and "'present'" in state, f"{f}: {t['name']}: state {state!r}"
                role = f.parents[1]
                defaults = yaml.safe_load((role / "defaults" / "main.yml").read_text())
                specs = yaml.safe_load((role / "meta" / "argument_specs.yml").read_text())
                for flag in flags:
                    assert defaults[flag] is False, flag
                    assert specs["argument_specs"]["main"]["options"][flag]["type"] == "bool", flag
    assert seen > 10


@pytest.mark.parametrize("playbook", ["site.yml", "playbooks/verify.yml", "playbooks/teardown.yml"])
def test_controller_paths_are_the_kits_whichever_playbook_runs(playbook: str) -> None:
    """Paths on the controller (the CLIs, reports, the compose files shipped) come from the kit's checkout, not
    playbook_dir: `ansible-playbook playbooks/verify.yml` must not look in playbooks/.venv or playbooks/reports."""
    from ansible.parsing.dataloader import DataLoader
    from ansible.template import Templar, trust_as_template

    kit = ROLES.parent
    for role, names in {"verify": ("verify_bin_dir", "verify_reports_dir"),
                        "inference_stack": ("inference_stack_kit_root",)}.items():
        variables: dict[str, Any] = {}
        for part in ("defaults", "vars"):
            f = ROLES / role / part / "main.yml"
            variables |= {k: trust_as_template(v) if isinstance(v, str) else v
                          for k, v in yaml.safe_load(f.read_text()).items()}
        variables |= {"role_path": str(ROLES / role), "playbook_dir": str((kit / playbook).parent)}
        if role == "verify":  # GIK_BIN unset (the env lookup needs a play's context)
            variables["verify_bin_dir"] = trust_as_template(str(variables["verify_bin_dir"]).replace(
                "lookup('ansible.builtin.env', 'GIK_BIN')", "''"))
        t = Templar(loader=DataLoader(), variables=variables)
        got = {n: t.template(variables[n]).strip() for n in names}
        want = {"verify_bin_dir": f"{kit}/.venv/bin", "verify_reports_dir": f"{kit}/reports",
                "inference_stack_kit_root": str(kit)}
        assert got == {n: want[n] for n in names}
    for f in [*ROLES.glob("*/*/*.yml"), *(kit / "playbooks").glob("*.yml"), kit / "site.yml"]:
        assert "playbook_dir" not in f.read_text(), f"{f} builds a path from playbook_dir"


@pytest.mark.parametrize(("kernel", "major", "want"), [
    ("5.14.0-427.13.1.el9_4.x86_64", "9", ["kernel-devel-matched", "kernel-headers"]),
    ("5.14.0-427.13.1.el9_4.aarch64+64k", "9", ["kernel-64k-devel-matched", "kernel-headers"]),
    ("4.18.0-553.el8_10.x86_64", "8", ["kernel-devel-4.18.0-553.el8_10.x86_64", "kernel-headers"]),
])
def test_rhel_kernel_packages_follow_nvidias_guide(kernel: str, major: str, want: list[str]) -> None:
    """NVIDIA's driver installation guide (EL9): `dnf install kernel-devel-matched kernel-headers`, the 64k
    kernel variant kernel-64k-devel-matched; kernel-headers has no per-kernel name (EL8: kernel-devel-$(uname -r))."""
    from ansible.parsing.dataloader import DataLoader
    from ansible.template import Templar, trust_as_template

    raw = yaml.safe_load((ROLES / "nvidia_driver" / "vars" / "main.yml").read_text())["nvidia_driver_dnf_headers"]
    facts = {"kernel": kernel, "distribution_major_version": major}
    t = Templar(loader=DataLoader(), variables={"ansible_facts": facts})
    assert t.template(trust_as_template(raw)) == want


def test_no_role_tests_a_host_path_on_the_controller() -> None:
    """Jinja's `is file` / `is directory` / `is exists` / `is link` look at the controller's disk, not the host's:
    a host path is checked with ansible.builtin.stat on the host."""
    for f in ROLES.glob("*/tasks/*.yml"):
        found = re.findall(r"\bis\s+(?:not\s+)?(file|directory|exists|link|mount|same_file)\b", f.read_text())
        assert not found, f"{f}: `is {found[0]}` tests the controller's disk"


# -- typed settings given as text ------------------------------------------------------------------------------
# `-e name=value` is text and ranks above set_fact: the first play checks it converts (healthchecks/stack.yml) but
# cannot replace it, so every role reads a typed stack setting through its type filter (`| int`, `| float`,
# `| bool`), or substitutes it whole into text or a module argument (`"{{ name }}"`, which the module converts).
_CONDITIONS = ("when", "that", "failed_when", "changed_when", "until")
_JINJA = re.compile(r"\{\{(.*?)\}\}|\{%(.*?)%\}", re.S)


def _expressions(node: Any, key: str = "") -> list[str]:
    """Every Jinja expression of a YAML document: conditionals whole, other strings' {{ }} and {% %} parts."""
    if isinstance(node, dict):
        return [x for k, v in node.items() for x in _expressions(v, str(k))]
    if isinstance(node, list):
        return [x for v in node for x in _expressions(v, key)]
    if not isinstance(node, str):
        return []
    if key in _CONDITIONS and "{{" not in node:
        return [node]
    if node.strip().startswith("{{") and node.strip().endswith("}}") and node.count("{{") == 1:
        inner = node.strip()[2:-2].strip()
        return [] if re.fullmatch(r"[\w.]+", inner) else [inner]  # a whole substitution: the module converts
    return [e for a, b in _JINJA.findall(node) if not re.fullmatch(r"\s*[\w.]+\s*", e := a or b)]


def _unfiltered_reads(expression: str, names: dict[str, str]) -> list[str]:
    bad = []
    for name, kind in names.items():
        for m in re.finditer(rf"(?<![\w.'\"]){name}(?![\w'\"])", expression):
            rest = expression[m.end():]
            rest = re.sub(r"^\s*\|\s*default\([^()]*\)", "", rest)  # `| default(x)` then the filter
            if not re.match(rf"[\s)]*\|\s*(ansible\.builtin\.)?({kind}|string)\b", rest):  # also default(x)) | f
                bad.append(f"{name} ({kind}) in: {expression.strip()[:90]}")
    return bad


@pytest.mark.parametrize("role", [r.name for r in sorted(ROLES.iterdir()) if r.is_dir()])
def test_roles_read_typed_stack_settings_through_their_type_filter(role: str) -> None:
    from healthchecks import stack

    names = {s.ansible: s.type for s in stack.load().settings.values()
             if s.ansible and s.type in ("int", "float", "bool")}
    offenders = []
    for kind in ("tasks", "vars", "handlers"):  # defaults alias a setting; its own readers filter it
        for f in sorted((ROLES / role).glob(f"{kind}/*.yml")):
            for expression in _expressions(yaml.safe_load(f.read_text())):
                offenders += [f"{f.relative_to(ROLES)}: {b}" for b in _unfiltered_reads(expression, names)]
    for f in sorted((ROLES / role).glob("templates/*.j2")):
        for a, b in _JINJA.findall(f.read_text()):
            e = a or b
            if not re.fullmatch(r"\s*[\w.]+\s*", e):  # a whole substitution renders text as text
                offenders += [f"{f.relative_to(ROLES)}: {x}" for x in _unfiltered_reads(e, names)]
    assert not offenders, "\n".join(offenders)


def test_the_typed_read_check_finds_a_comparison() -> None:
    names = {"inference_stack_vllm_gpu_memory_utilization": "float", "preflight_min_free_disk_gb": "int"}
    assert _unfiltered_reads("x | float >= preflight_min_free_disk_gb", names)
    assert not _unfiltered_reads("x | float >= preflight_min_free_disk_gb | int", names)
    assert _unfiltered_reads("inference_stack_vllm_gpu_memory_utilization > 0", names)
    assert not _unfiltered_reads("inference_stack_vllm_gpu_memory_utilization | default(1) | float > 0", names)
    doc = [{"ansible.builtin.assert": {"that": ["preflight_min_free_disk_gb > 1"]}, "when": "a | bool",
            "vars": {"m": "{{ preflight_min_free_disk_gb }}"}}]
    assert _expressions(doc) == ["preflight_min_free_disk_gb > 1", "a | bool"]


# -- the compose services inference_stack starts, from the stack catalogue -----------------------------------------
_DEPLOYED = ["vllm", "ollama", "llamacpp"]


@pytest.mark.parametrize("engines", [e for n in range(1, 4) for e in itertools.combinations(_DEPLOYED, n)],
                         ids="+".join)
def test_inference_stack_services_and_model_checks_come_from_the_catalogue(engines: tuple[str, ...]) -> None:
    """inference_stack starts each engine and its companions and reads the verdict of each engine's model check as
    healthchecks/stack.yml lists them (it named ollama-models and vllm-model-check by hand)."""
    from ansible.parsing.dataloader import DataLoader
    from ansible.plugins.loader import init_plugin_loader
    from ansible.template import Templar
    from conftest import trust_templates

    from healthchecks import stack

    init_plugin_loader()  # the vars read the catalogue through the file lookup, as on the controller
    cat = stack.load()
    assert sorted(cat.deployed) == sorted(_DEPLOYED)
    variables: dict[str, Any] = {}
    for part in ("defaults", "vars"):
        variables.update(trust_templates(yaml.safe_load((ROLES / "inference_stack" / part / "main.yml").read_text())))
    variables.update(role_path=str(ROLES / "inference_stack"), inference_stack_engines=list(engines))
    t = Templar(loader=DataLoader(), variables=variables)
    assert t.template(variables["inference_stack_services"]) == cat.services(list(engines))
    want = [{"service": cat.engines[e].model_check, "title": cat.engines[e].title}
            for e in engines if cat.engines[e].model_check]
    assert t.template(variables["inference_stack_model_checks"]) == want
    if "vllm" in engines:
        assert want == [{"service": "vllm-model-check", "title": "vLLM"}]


def test_inference_stack_names_the_model_checks_cause_when_the_engines_do_not_come_up() -> None:
    """The rescue of the deploy reads each engine's model check (stack.yml model_check) and stops with its cause,
    titled by the engine; the lines of a check that passed are not a cause."""
    from ansible.parsing.dataloader import DataLoader
    from ansible.template import Templar
    from conftest import trust_templates

    tasks = yaml.safe_load((ROLES / "inference_stack" / "tasks" / "deploy.yml").read_text())
    rescue = next(t for t in tasks if "rescue" in t)["rescue"]
    read, stop = rescue
    assert read["loop"] == "{{ inference_stack_model_checks }}"
    assert "{{ item.service }}" in read["ansible.builtin.command"]["cmd"]
    item = {"service": "vllm-model-check", "title": "vLLM"}
    out = ("vllm-model-check-1  | vllm-model-check: org/m can be downloaded from https://hub.lab with the token\n"
           "vllm-model-check-1  | vllm-model-check: org/m is a gated repository and no Hugging Face token was given")
    variables = trust_templates({**stop["vars"], "inventory_hostname": "lab1",
                                 "inference_stack_model_check": {"results": [{"item": item, "stdout": out}]}})
    template = trust_templates(stop["ansible.builtin.fail"]["msg"])
    msg = Templar(loader=DataLoader(), variables=variables).template(template)
    assert msg.strip() == ("lab1: vLLM cannot get its model: org/m is a gated repository and no Hugging Face token "
                           "was given")
    variables["inference_stack_model_check"] = {"results": []}
    variables["ansible_failed_result"] = {"msg": "container gik-vllm-1 is unhealthy"}
    msg = Templar(loader=DataLoader(), variables=variables).template(template)
    assert msg.strip() == "lab1: the engines did not come up: container gik-vllm-1 is unhealthy"
