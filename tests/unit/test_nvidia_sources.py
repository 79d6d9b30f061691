"""The nvidia_driver and container_toolkit roles held against tests/fixtures/nvidia/packages.yml, a table written
from NVIDIA's own install code and guides (each row cites file:line or guide section), not from the roles.

Names are rendered from the roles' vars with Ansible's templating for hosts this machine cannot be; version
patterns are matched against the real version strings the table records; the roles' detection shell is run
against stand-in sysfs trees; the check-mode listing is rendered as Ansible renders it."""

from __future__ import annotations

import fnmatch
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from ansible.parsing.dataloader import DataLoader
from ansible.template import Templar, trust_as_template
from conftest import flat_tasks, trust_templates

pytestmark = pytest.mark.unit
ROOT = Path(__file__).resolve().parents[2]
ROLES = ROOT / "roles"
TABLE = yaml.safe_load((ROOT / "tests" / "fixtures" / "nvidia" / "packages.yml").read_text())
KERNEL = "6.1.0-27-amd64"
FACTS = {
    "ubuntu2204": {"distribution": "Ubuntu", "distribution_version": "22.04", "distribution_major_version": "22",
                   "os_family": "Debian", "architecture": "x86_64"},
    "ubuntu2404": {"distribution": "Ubuntu", "distribution_version": "24.04", "distribution_major_version": "24",
                   "os_family": "Debian", "architecture": "x86_64"},
    "debian12": {"distribution": "Debian", "distribution_version": "12", "distribution_major_version": "12",
                 "os_family": "Debian", "architecture": "x86_64"},
    "debian12-arm64": {"distribution": "Debian", "distribution_version": "12", "distribution_major_version": "12",
                       "os_family": "Debian", "architecture": "aarch64"},
    "rhel9": {"distribution": "RedHat", "distribution_version": "9.4", "distribution_major_version": "9",
              "os_family": "RedHat", "architecture": "x86_64"},
}
SOURCES = ("GDC@", "NARD", "NCT", "DIG", "CTIG", "developer.download.nvidia.com", "packages.debian.org",
           "apt_preferences(5)", "fabric-manager-user-guide")


_trust = trust_templates


def render(role: str, host: str, **overrides: Any) -> Templar:
    variables: dict[str, Any] = {}
    for part in ("defaults", "vars"):
        variables.update(_trust(yaml.safe_load((ROLES / role / part / "main.yml").read_text())))
    variables.update(_trust(overrides))
    variables["ansible_facts"] = {**FACTS[host], "kernel": KERNEL, **overrides.pop("facts", {})}
    variables["inventory_hostname"] = host
    return Templar(loader=DataLoader(), variables=variables)


def value(t: Templar, expr: str) -> Any:
    out = t.template(t.available_variables[expr] if expr in t.available_variables else trust_as_template(expr))
    return out.strip() if isinstance(out, str) else out


def tasks(role: str, files: str = "*.yml") -> list[dict[str, Any]]:
    return [t for f in sorted((ROLES / role / "tasks").glob(files)) for t in flat_tasks(yaml.safe_load(f.read_text()))]


def task(role: str, name_part: str, files: str = "*.yml") -> dict[str, Any]:
    found = [t for t in tasks(role, files) if name_part in t.get("name", "")]
    assert len(found) == 1, (name_part, [t.get("name") for t in found])
    return found[0]


def _in(branch: int, rule: str) -> bool:
    op, num = re.fullmatch(r"(>=|<)(\d+)", rule).groups()  # type: ignore[union-attr]
    return branch >= int(num) if op == ">=" else branch < int(num)


def _rows(family: str, branch: int) -> dict[str, Any]:
    rows = [r for r in TABLE["fabric_manager"] if r["family"] == family and _in(branch, r["branches"])]
    assert len(rows) == 1
    return rows[0]


def test_every_row_cites_nvidias_or_dockers_own_source() -> None:
    def walk(o: Any, where: str) -> list[str]:
        if isinstance(o, dict):
            found = [where] if "cite" in o else []
            if "cite" in o:
                assert any(s in o["cite"] for s in SOURCES), f"{where}: {o['cite']!r} names no NVIDIA/Docker source"
            return found + [w for k, v in o.items() for w in walk(v, f"{where}.{k}")]
        if isinstance(o, list):
            return [w for i, v in enumerate(o) for w in walk(v, f"{where}[{i}]")]
        return []
    cited = walk(TABLE, "packages.yml")
    assert len(cited) >= 20, cited
    for key, rows in TABLE.items():  # every top-level entry is itself cited, or made of cited rows
        assert "cite" in rows if isinstance(rows, dict) else all("cite" in r for r in rows), key


@pytest.mark.parametrize(("host", "branch"), [("ubuntu2204", 580), ("ubuntu2204", 570), ("ubuntu2404", 590),
                                              ("debian12", 580), ("debian12", 570)])
def test_fabric_manager_names_by_branch_as_nvidia_installs_them(host: str, branch: int) -> None:
    """Issue 20 item 1: unversioned nvidia-fabricmanager / libnvidia-nscq from 580 (branch-named before), as
    NVIDIA's driver container installs them; the old role asked Ubuntu 580 for nvidia-fabricmanager-580."""
    row = _rows("Debian", branch)
    t = render("nvidia_driver", host, nvidia_driver_branch=str(branch))
    want = [p.format(branch=branch) for p in row["packages"]]
    assert value(t, "nvidia_driver_apt_fm_packages") == want


@pytest.mark.parametrize("branch", [580, 570])
def test_fabric_manager_names_on_rhel(branch: int) -> None:
    row = _rows("RedHat", branch)
    t = render("nvidia_driver", "rhel9", nvidia_driver_branch=str(branch))
    assert value(t, "nvidia_driver_dnf_fm_packages") == [p.format(branch=branch) for p in row["packages"]]


def test_fabric_manager_is_pinned_to_the_installed_driver_and_held() -> None:
    """=<installed version>-* (NVIDIA: =${DRIVER_VERSION}*), matching the real version strings of that release and
    no other release's; then held (NVIDIA: apt-mark hold), and moved only with allow_change_held_packages."""
    t = render("nvidia_driver", "ubuntu2204", nvidia_driver_branch="580", nvidia_driver_fm_wanted=True,
               nvidia_driver_nvlink5_wanted=False, nvidia_driver_installed_raw={"stdout": "580.95.05\n"})
    fm = task("nvidia_driver", "Install Fabric Manager at the installed driver's exact version", "debian.yml")
    apt = fm["ansible.builtin.apt"]
    specs = t.template(trust_as_template(apt["name"]))
    assert specs == ["nvidia-fabricmanager=580.95.05-*", "libnvidia-nscq=580.95.05-*"]
    assert apt["allow_change_held_packages"] is True
    releases = TABLE["driver_releases"]
    for spec in specs:
        glob = spec.split("=", 1)[1]
        for rel in releases:
            for distro in ("ubuntu", "debian"):
                assert fnmatch.fnmatchcase(rel[distro], glob) is (rel["version"] == "580.95.05"), (glob, rel[distro])
    hold = task("nvidia_driver", "Hold the driver and Fabric Manager packages")
    assert hold["ansible.builtin.dpkg_selections"]["selection"] == "hold"
    t2 = render("nvidia_driver", "ubuntu2204")
    names = ["nvidia-fabricmanager", "libnvidia-nscq", "nvidia-open", "nvidia-driver-cuda", "nvidia-driver-pinning-580",
             "nvidia-container-toolkit", "libnvidia-container1", "dkms"]
    t2.available_variables = {**t2.available_variables,
                              "ansible_facts": {**t2.available_variables["ansible_facts"],
                                                "packages": {n: [{"version": "1"}] for n in names}}}
    held = t2.template(trust_as_template(hold["loop"]))
    assert held == ["libnvidia-nscq", "nvidia-driver-cuda", "nvidia-fabricmanager", "nvidia-open"]


def _sysfs(tmp: Path, nvswitch: bool, nvlink5: bool) -> Path:
    root = tmp / "sys"
    gpu = root / "bus" / "pci" / "devices" / "0000:18:00.0"
    gpu.mkdir(parents=True)
    (gpu / "vendor").write_text("0x10de\n")
    (gpu / "class").write_text("0x030200\n")  # a GPU: 3D controller, not an NVSwitch
    if nvswitch:
        sw = root / "bus" / "pci" / "devices" / "0000:05:00.0"
        sw.mkdir(parents=True)
        (sw / "vendor").write_text("0x10de\n")
        (sw / "class").write_text("0x068000\n")
    ib = root / "class" / "infiniband" / "mlx5_0" / "device"
    ib.mkdir(parents=True)
    vpd = b"\x82\x10ConnectX-7\x90\x20PN:MCX75343\x00" + (b"V3\x06SW_MNG" if nvlink5 else b"V3\x02NO")
    (ib / "vpd").write_bytes(vpd)
    return root


def _detect(name_part: str, sysfs: Path) -> list[str]:
    cmd = task("nvidia_driver", name_part)["ansible.builtin.shell"]
    t = Templar(loader=DataLoader(), variables={"nvidia_driver_sysfs": str(sysfs)})
    script = t.template(trust_as_template(cmd))
    out = subprocess.run(["/bin/sh", "-c", script], capture_output=True, text=True, check=True).stdout
    return [line for line in out.splitlines() if line.startswith(str(sysfs))]


@pytest.mark.parametrize(("nvswitch", "nvlink5"), [(False, False), (True, False), (False, True), (True, True)])
def test_nvswitch_and_nvlink5_detection_as_nvidia_detects_them(tmp_path: Path, nvswitch: bool, nvlink5: bool) -> None:
    """Issue 20 item 2: NVLink5 (HGX B200/B300) is found as NVIDIA's driver container finds it - an InfiniBand
    device's VPD naming SW_MNG - and gets Fabric Manager with nvlsm and infiniband-diags."""
    sysfs = _sysfs(tmp_path, nvswitch, nvlink5)
    switches = _detect("Count NVSwitch devices", sysfs)
    ports = _detect("Look for NVLink5 switch management ports", sysfs)
    assert len(switches) == int(nvswitch) and len(ports) == int(nvlink5), (switches, ports)
    detection = TABLE["nvlink5_detection"]
    assert detection["glob"] in task("nvidia_driver", "Look for NVLink5")["ansible.builtin.shell"]
    assert detection["marker"] in task("nvidia_driver", "Look for NVLink5")["ansible.builtin.shell"]
    t = render("nvidia_driver", "ubuntu2404", nvidia_driver_nvswitch_count=len(switches),
               nvidia_driver_nvlink5=bool(ports))
    assert bool(value(t, "nvidia_driver_fm_wanted")) is (nvswitch or nvlink5)
    assert bool(value(t, "nvidia_driver_nvlink5_wanted")) is nvlink5
    assert value(t, "nvidia_driver_nvlink5_packages") == TABLE["nvlink5"]["packages"]
    assert value(t, "nvidia_driver_nvlink5_min_branch") == int(TABLE["nvlink5"]["branches"].lstrip(">="))


@pytest.mark.parametrize("host", ["ubuntu2204", "debian12"])
def test_exact_version_lock_matches_the_real_version_strings(host: str) -> None:
    """Issue 20 item 3: `Pin: version 580.95.05.*` matched no package (580.95.05-0ubuntu1, 580.95.05-1): the lock
    pattern now matches that release's real strings and not the next release's; it outranks NVIDIA's branch pin."""
    t = render("nvidia_driver", host, nvidia_driver_version="580.95.05")
    pin = value(t, "nvidia_driver_apt_lock_pin")
    assert pin == TABLE["apt_version_lock"]["exact"].format(driver="580.95.05")
    assert bool(value(t, "nvidia_driver_apt_lock_wanted")) and int(value(t, "nvidia_driver_apt_lock_priority")) > 1000
    assert value(t, "nvidia_driver_apt_driver_specs")[0].endswith("=580.95.05-*")
    for rel in TABLE["driver_releases"]:
        for distro in ("ubuntu", "debian"):
            assert fnmatch.fnmatchcase(rel[distro], pin) is (rel["version"] == "580.95.05"), rel[distro]
    t = render("nvidia_driver", host)
    branch_pin = value(t, "nvidia_driver_apt_lock_pin")
    assert branch_pin == "580.*" and all(fnmatch.fnmatchcase(r["debian"], branch_pin) is r["version"].startswith("580.")
                                         for r in TABLE["driver_releases"])


def test_rhel_locks_and_switches_as_nvidias_guide_documents() -> None:
    """Issue 20 item 3 (RHEL): nvidia_driver_version is honoured (nvidia-open-<version> + dnf versionlock of
    *nvidia*<version>*), and a branch change is `dnf module switch-to ... --allowerasing`, not reset + install."""
    ref = TABLE["dnf_driver"]
    t = render("nvidia_driver", "rhel9", nvidia_driver_version="580.95.05")
    assert value(t, "nvidia_driver_dnf_driver_package") == "nvidia-open-580.95.05"
    assert value(t, "nvidia_driver_dnf_versionlock_spec") == ref["versionlock_spec"].format(driver="580.95.05")
    assert value(t, "nvidia_driver_dnf_versionlock_plugin") == ref["versionlock_plugin"]
    lock = task("nvidia_driver", "Lock the exact driver version (dnf versionlock")
    assert lock["community.general.dnf_versionlock"]["state"] == "present"
    switch = task("nvidia_driver", "Switch the nvidia-driver module")["ansible.builtin.command"]
    stream = value(t, "nvidia_driver_dnf_module_stream")
    assert t.template(trust_as_template(switch)) == "dnf -y " + ref["switch"].split("dnf -y ")[1].format(stream=stream)
    assert not any("module reset" in str(x.get("ansible.builtin.command", "")) for x in tasks("nvidia_driver"))


def test_toolkit_is_held_like_nvidia_holds_its_pinned_packages() -> None:
    """Issue 20 item 3: the four toolkit packages are held (apt) / versionlocked (dnf) at the pin, so a plain
    upgrade cannot move them (and run the daemon-reload of their postinst)."""
    t = render("container_toolkit", "ubuntu2404")
    assert value(t, "container_toolkit_packages") == TABLE["toolkit"]["packages"]
    hold = task("container_toolkit", "Hold the four toolkit packages")
    assert hold["ansible.builtin.dpkg_selections"]["selection"] == "hold"
    assert t.template(trust_as_template(hold["loop"])) == TABLE["toolkit"]["packages"]
    install = task("container_toolkit", "Install the four pinned toolkit packages", "install-debian.yml")
    assert install.get("ansible.builtin.apt", {}).get("allow_change_held_packages") is True
    lock = [x for x in tasks("container_toolkit") if "community.general.dnf_versionlock" in x
            and x["community.general.dnf_versionlock"]["state"] == "present"]
    assert len(lock) == 1 and lock[0]["community.general.dnf_versionlock"]["name"] == "{{ container_toolkit_dnf_pins }}"
    assert {r["version"] for r in TABLE["toolkit_releases"]} >= {value(t, "container_toolkit_version")}


def test_one_cdi_spec_the_one_nvidias_refresh_service_writes() -> None:
    """Issue 20 item 4: nothing copies a spec into /etc/cdi (which need not exist); toolkit 1.18's
    nvidia-cdi-refresh units keep /var/run/cdi/nvidia.yaml current; the old /etc/cdi copy is removed."""
    ref = TABLE["cdi"]
    t = render("container_toolkit", "ubuntu2404")
    assert value(t, "container_toolkit_cdi_spec") == ref["spec"]
    assert value(t, "container_toolkit_cdi_units") == ref["units"]
    assert value(t, "container_toolkit_cdi_refresh") is True
    assert render("container_toolkit", "ubuntu2404", container_toolkit_version="1.17.8-1").template(
        trust_as_template("{{ container_toolkit_cdi_refresh }}")) is False
    for x in tasks("container_toolkit"):
        for module in ("ansible.builtin.copy", "ansible.builtin.template"):
            dest = str((x.get(module) or {}).get("dest", ""))
            assert "/etc/cdi" not in dest and "cdi_legacy" not in dest, x["name"]
    units = task("container_toolkit", "Keep the CDI spec current with NVIDIA's nvidia-cdi-refresh")
    assert units["ansible.builtin.systemd_service"]["enabled"] is True
    removed = task("container_toolkit", "Remove the second CDI spec")
    assert removed["ansible.builtin.file"]["state"] == "absent"
    assert value(t, "container_toolkit_cdi_legacy_spec") == "/etc/cdi/nvidia.yaml"


def test_persistenced_is_enabled_as_nvidias_role_enables_it() -> None:
    """Issue 20 item 5: NVIDIA's ansible-role-nvidia-driver enables nvidia-persistenced."""
    t = render("nvidia_driver", "ubuntu2404")
    enable = task("nvidia_driver", "Enable nvidia-persistenced")["ansible.builtin.systemd_service"]
    assert t.template(trust_as_template(enable["name"])) == TABLE["persistenced"]["service"]
    assert enable["enabled"] is True


@pytest.mark.parametrize(("host", "meta"), [("debian12", "linux-headers-amd64"),
                                            ("debian12-arm64", "linux-headers-arm64")])
def test_debian_gets_the_headers_metapackage_that_follows_kernel_updates(host: str, meta: str) -> None:
    """Issue 20 item 5: headers of the running kernel AND Debian's metapackage (the next kernel's headers come
    with the next kernel, so DKMS builds the module before the reboot)."""
    t = render("nvidia_driver", host)
    headers = value(t, "nvidia_driver_apt_headers")
    assert headers == [f"linux-headers-{KERNEL}", meta, "dkms"]
    row = TABLE["headers"][0]
    arch = {"x86_64": "amd64", "aarch64": "arm64"}[FACTS[host]["architecture"]]
    assert meta in [p.format(dpkg_arch=arch) for p in row["packages"]]


def _check_listing(role: str, name: str, t: Templar, installed: dict[str, str]) -> tuple[list[str], bool]:
    dbg = task(role, name)
    t.available_variables = {**t.available_variables, **_trust(dbg["vars"]),
                             "ansible_facts": {**t.available_variables["ansible_facts"],
                                               "packages": {k: [{"version": v}] for k, v in installed.items()}}}
    name = next(k for k in dbg["vars"] if k.endswith("_missing"))
    missing = t.template(trust_as_template("{{ " + name + " }}"))
    changed = t.template(trust_as_template("{{ " + dbg["changed_when"] + " }}"))
    return missing, bool(changed)


def test_check_mode_lists_the_packages_a_real_run_installs() -> None:
    """Issue 20 item 6: --check on a fresh host names the driver and toolkit packages the install tasks request
    (the old message named nvidia-open-580 on hosts that install nvidia-open) and reports a change; on a host that
    has them it reports none, and a version the lock does not allow counts as missing."""
    t = render("nvidia_driver", "debian12", nvidia_driver_version="580.95.05", nvidia_driver_fm_wanted=False,
               nvidia_driver_nvlink5_wanted=False)
    missing, changed = _check_listing("nvidia_driver", "Say which driver packages a real run would install", t, {})
    assert missing == ["nvidia-open=580.95.05-*", "nvidia-driver-pinning-580", f"linux-headers-{KERNEL}",
                       "linux-headers-amd64", "dkms", "cuda-toolkit-12-8"] and changed
    present = {"nvidia-open": "580.95.05-1", "nvidia-driver-pinning-580": "1.0-1", f"linux-headers-{KERNEL}": "1",
               "linux-headers-amd64": "1", "dkms": "3", "cuda-toolkit-12-8": "12.8.1-1"}
    assert _check_listing("nvidia_driver", "Say which driver packages", t, present) == ([], False)
    assert _check_listing("nvidia_driver", "Say which driver packages", t,
                          {**present, "nvidia-open": "580.105.08-1"}) == (["nvidia-open=580.95.05-*"], True)
    # the branch lock alone: an installed release of the branch is asked for exactly (apt would install the newest
    # match of 580.*, moving a serving host to 580.105.08), another branch's or none by the glob
    t = render("nvidia_driver", "debian12", nvidia_driver_fm_wanted=False, nvidia_driver_nvlink5_wanted=False)
    assert _check_listing("nvidia_driver", "Say which driver packages", t, present) == ([], False)
    assert value(t, "nvidia_driver_apt_driver_specs") == ["nvidia-open=580.95.05-1"]
    t = render("nvidia_driver", "debian12", nvidia_driver_branch="590", nvidia_driver_fm_wanted=False,
               nvidia_driver_nvlink5_wanted=False)
    t.available_variables = {**t.available_variables, "ansible_facts": {
        **t.available_variables["ansible_facts"], "packages": {"nvidia-open": [{"version": "580.95.05-1"}]}}}
    assert value(t, "nvidia_driver_apt_driver_specs") == ["nvidia-open=590.*"]
    t = render("nvidia_driver", "ubuntu2204", nvidia_driver_fm_wanted=True, nvidia_driver_nvlink5_wanted=True)
    missing, _ = _check_listing("nvidia_driver", "Say which driver packages", t, {})
    assert missing[0] == "nvidia-open-580=580.*" and "nvidia-driver-pinning-580" not in missing
    assert {"nvidia-fabricmanager=580.*", "libnvidia-nscq=580.*", "nvlsm", "infiniband-diags"} <= set(missing)

    t = render("container_toolkit", "debian12")
    missing, changed = _check_listing("container_toolkit", "Say which toolkit packages a real run would install", t, {})
    assert missing == [f"{p}=1.18.0-1" for p in TABLE["toolkit"]["packages"]] and changed
    held = dict.fromkeys(TABLE["toolkit"]["packages"], "1.18.0-1")
    assert _check_listing("container_toolkit", "Say which toolkit packages", t, held) == ([], False)
    assert _check_listing("container_toolkit", "Say which toolkit packages", t,
                          {**held, "libnvidia-container1": "1.17.8-1"})[0] == ["libnvidia-container1=1.18.0-1"]
    for role in ("nvidia_driver", "container_toolkit"):
        include = [x for x in tasks(role, "main.yml")
                   if "ansible.builtin.include_tasks" in x and "install" in x["name"].lower()]
        assert include and all("not ansible_check_mode" in str(x.get("when")) for x in include)


DOWNLOADS = ("ansible.builtin.get_url", "get_url", "ansible.builtin.rpm_key", "rpm_key")


def _downloads(x: dict[str, Any]) -> bool:
    if any(m in x for m in DOWNLOADS):
        return True
    apt = x.get("ansible.builtin.apt") or x.get("apt") or {}
    if isinstance(apt, dict) and "deb" in apt:
        return True
    for m in ("ansible.builtin.dnf", "dnf", "ansible.builtin.yum", "ansible.builtin.package"):
        args = x.get(m)
        if isinstance(args, dict):
            names = args.get("name", [])
            names = [names] if isinstance(names, str) else names
            if any("://" in str(n) or "epel_package" in str(n) for n in names):
                return True
    return False


def test_every_downloading_task_takes_the_proxy_from_its_environment() -> None:
    """Issue 19 item 3: get_url, apt deb=, dnf with a URL and rpm_key download with the task's environment only:
    each carries proxy_task_environment (roles/proxy)."""
    found = []
    for f in sorted(ROLES.glob("*/tasks/*.yml")):
        for x in flat_tasks(yaml.safe_load(f.read_text())):
            if _downloads(x):
                found.append(f"{f.relative_to(ROLES)}: {x.get('name')}")
                assert "proxy_task_environment" in str(x.get("environment", "")), found[-1]
    assert len(found) >= 4, found  # nvidia_driver keyring deb + mirror key + EPEL, toolkit key, docker key
