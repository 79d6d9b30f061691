"""The roles' package/URL decisions for hosts this machine cannot be (Ubuntu 22.04/24.04, RHEL 9; x86_64 and
aarch64), rendered from the roles' own defaults/vars with Ansible's templating and held against NVIDIA's and
Docker's documented names. The table below is the reference; the sources are named next to each block."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from ansible.parsing.dataloader import DataLoader
from ansible.template import Templar, trust_as_template
from conftest import trust_templates

pytestmark = pytest.mark.unit
ROLES = Path(__file__).resolve().parents[2] / "roles"
KERNEL = "6.8.0-45-generic"
NV = "https://developer.download.nvidia.com/compute/cuda/repos"

HOSTS = {  # name -> Ansible facts
    "ubuntu2204-x86_64": {"distribution": "Ubuntu", "distribution_version": "22.04", "distribution_major_version": "22",
                          "distribution_release": "jammy", "os_family": "Debian", "architecture": "x86_64"},
    "ubuntu2204-aarch64": {"distribution": "Ubuntu", "distribution_version": "22.04",
                           "distribution_major_version": "22", "distribution_release": "jammy", "os_family": "Debian",
                           "architecture": "aarch64"},
    "ubuntu2404-x86_64": {"distribution": "Ubuntu", "distribution_version": "24.04", "distribution_major_version": "24",
                          "distribution_release": "noble", "os_family": "Debian", "architecture": "x86_64"},
    "ubuntu2404-aarch64": {"distribution": "Ubuntu", "distribution_version": "24.04",
                           "distribution_major_version": "24", "distribution_release": "noble", "os_family": "Debian",
                           "architecture": "aarch64"},
    "rhel9-x86_64": {"distribution": "RedHat", "distribution_version": "9.4", "distribution_major_version": "9",
                     "distribution_release": "Plow", "os_family": "RedHat", "architecture": "x86_64"},
    "rhel9-aarch64": {"distribution": "RedHat", "distribution_version": "9.4", "distribution_major_version": "9",
                      "distribution_release": "Plow", "os_family": "RedHat", "architecture": "aarch64"},
    "rocky9-x86_64": {"distribution": "Rocky", "distribution_version": "9.4", "distribution_major_version": "9",
                      "distribution_release": "Blue Onyx", "os_family": "RedHat", "architecture": "x86_64"},
}

# NVIDIA Driver Installation Guide (network repository): <base>/<distro>/<arch>/ with arch x86_64 or sbsa (arm64
# servers, GH200/Grace); Ubuntu/Debian: cuda-keyring_1.1-1_all.deb -> /usr/share/keyrings/cuda-archive-keyring.gpg
# and /etc/apt/sources.list.d/cuda-<distro>-<arch>.list, pin /etc/apt/preferences.d/cuda-repository-pin-600;
# Ubuntu before 590: branch-named packages; from 590 the branch moves to nvidia-driver-pinning-<branch> and the
# names lose it (nvidia-dkms-580-open -> nvidia-dkms-open, ...). RHEL: cuda-<distro>.repo, the module stream
# nvidia-driver:<branch>-open (profile /fm with Fabric Manager), EPEL (dkms) + CRB, kernel-devel-matched +
# kernel-headers (NVIDIA's driver installation guide, EL9).
EXPECTED_NVIDIA: dict[tuple[str, str], dict[str, Any]] = {
    ("ubuntu2204-x86_64", "580"): {
        "nvidia_driver_repo_url": f"{NV}/ubuntu2204/x86_64",
        "nvidia_driver_apt_list": "/etc/apt/sources.list.d/cuda-ubuntu2204-x86_64.list",
        "nvidia_driver_apt_keyring": "/usr/share/keyrings/cuda-archive-keyring.gpg",
        "nvidia_driver_apt_pin": "/etc/apt/preferences.d/cuda-repository-pin-600",
        "nvidia_driver_apt_line":
            f"deb [signed-by=/usr/share/keyrings/cuda-archive-keyring.gpg] {NV}/ubuntu2204/x86_64/ /",
        "keyring_deb_url": f"{NV}/ubuntu2204/x86_64/cuda-keyring_1.1-1_all.deb",
        "nvidia_driver_apt_pinning_scheme": False,
        "nvidia_driver_apt_driver_package": "nvidia-open-580",
        # NVIDIA/gpu-driver-container@091f60d ubuntu22.04/install.sh:55-75: unversioned from 580 (the role asked for
        # nvidia-fabricmanager-580, which NVIDIA does not publish for 580; tests/fixtures/nvidia/packages.yml)
        "nvidia_driver_apt_fm_packages": ["nvidia-fabricmanager", "libnvidia-nscq"],
        "nvidia_driver_apt_headers": [f"linux-headers-{KERNEL}", "dkms"],
    },
    ("ubuntu2204-aarch64", "580"): {
        "nvidia_driver_repo_url": f"{NV}/ubuntu2204/sbsa",
        "nvidia_driver_apt_list": "/etc/apt/sources.list.d/cuda-ubuntu2204-sbsa.list",
        "keyring_deb_url": f"{NV}/ubuntu2204/sbsa/cuda-keyring_1.1-1_all.deb",
        "nvidia_driver_apt_driver_package": "nvidia-open-580",
    },
    ("ubuntu2404-x86_64", "590"): {
        "nvidia_driver_repo_url": f"{NV}/ubuntu2404/x86_64",
        "nvidia_driver_apt_list": "/etc/apt/sources.list.d/cuda-ubuntu2404-x86_64.list",
        "nvidia_driver_apt_pinning_scheme": True,
        "nvidia_driver_apt_pinning_package": "nvidia-driver-pinning-590",
        "nvidia_driver_apt_driver_package": "nvidia-open",
        "nvidia_driver_apt_fm_packages": ["nvidia-fabricmanager", "libnvidia-nscq"],
    },
    ("ubuntu2404-aarch64", "590"): {
        "nvidia_driver_repo_url": f"{NV}/ubuntu2404/sbsa",
        "nvidia_driver_apt_list": "/etc/apt/sources.list.d/cuda-ubuntu2404-sbsa.list",
        "nvidia_driver_apt_pinning_package": "nvidia-driver-pinning-590",
    },
    ("rhel9-x86_64", "580"): {
        "nvidia_driver_repo_url": f"{NV}/rhel9/x86_64",
        "nvidia_driver_dnf_repo_file": f"{NV}/rhel9/x86_64/cuda-rhel9.repo",
        # driver installation guide, RHEL 8/9: `dnf module enable nvidia-driver:580-open`, `dnf install nvidia-open`
        "nvidia_driver_dnf_module_stream": "580-open",
        "nvidia_driver_dnf_driver_package": "nvidia-open",
        "nvidia_driver_dnf_headers": ["kernel-devel-matched", "kernel-headers"],
        "nvidia_driver_crb_repo": "codeready-builder-for-rhel-9-x86_64-rpms",
        "nvidia_driver_epel_package": "https://dl.fedoraproject.org/pub/epel/epel-release-latest-9.noarch.rpm",
    },
    ("rhel9-aarch64", "590"): {
        "nvidia_driver_repo_url": f"{NV}/rhel9/sbsa",
        "nvidia_driver_dnf_repo_file": f"{NV}/rhel9/sbsa/cuda-rhel9.repo",
        "nvidia_driver_dnf_module_stream": "590-open",
        "nvidia_driver_dnf_driver_package": "nvidia-open",
        "nvidia_driver_crb_repo": "codeready-builder-for-rhel-9-aarch64-rpms",
    },
    ("rocky9-x86_64", "580"): {"nvidia_driver_crb_repo": "crb", "nvidia_driver_repo_url": f"{NV}/rhel9/x86_64"},
}

# NVIDIA Container Toolkit install guide: key https://nvidia.github.io/libnvidia-container/gpgkey de-armoured to
# /usr/share/keyrings/nvidia-container-toolkit-keyring.gpg, list nvidia-container-toolkit.list with
# `deb [signed-by=...] https://nvidia.github.io/libnvidia-container/stable/deb/$(ARCH) /`, four pinned packages.
TK = "https://nvidia.github.io/libnvidia-container"
EXPECTED_TOOLKIT = {
    "container_toolkit_repo_key_url": f"{TK}/gpgkey",
    "container_toolkit_apt_keyring": "/usr/share/keyrings/nvidia-container-toolkit-keyring.gpg",
    "container_toolkit_apt_list": "/etc/apt/sources.list.d/nvidia-container-toolkit.list",
    "container_toolkit_apt_line":
        f"deb [signed-by=/usr/share/keyrings/nvidia-container-toolkit-keyring.gpg] {TK}/stable/deb/$(ARCH) /",
    "container_toolkit_apt_pins": ["nvidia-container-toolkit=1.18.0-1", "nvidia-container-toolkit-base=1.18.0-1",
                                   "libnvidia-container-tools=1.18.0-1", "libnvidia-container1=1.18.0-1"],
    "container_toolkit_dnf_pins": ["nvidia-container-toolkit-1.18.0-1", "nvidia-container-toolkit-base-1.18.0-1",
                                   "libnvidia-container-tools-1.18.0-1", "libnvidia-container1-1.18.0-1"],
}

# Docker's install guides: /etc/apt/keyrings/docker.asc from <base>/<distro>/gpg, `deb [arch=<dpkg arch>
# signed-by=...] https://download.docker.com/linux/<distro> <codename> stable`; RHEL: <base>/rhel/...;
# conflicting packages removed first.
DK = "https://download.docker.com/linux"
EXPECTED_DOCKER = {
    "ubuntu2404-x86_64": {
        "docker_apt_key_url": f"{DK}/ubuntu/gpg",
        "docker_apt_line": f"deb [arch=amd64 signed-by=/etc/apt/keyrings/docker.asc] {DK}/ubuntu noble stable"},
    "ubuntu2204-aarch64": {
        "docker_apt_line": f"deb [arch=arm64 signed-by=/etc/apt/keyrings/docker.asc] {DK}/ubuntu jammy stable"},
    "rhel9-x86_64": {"docker_dnf_baseurl": f"{DK}/rhel/$releasever/$basearch/stable",
                     "docker_dnf_key_url": f"{DK}/rhel/gpg"},
}
CONFLICTS = {"Debian": {"docker.io", "containerd", "runc"}, "RedHat": {"podman", "runc", "buildah"}}


_trust = trust_templates


def render(role: str, host: str, **overrides: Any) -> Templar:
    variables: dict[str, Any] = {}
    for part in ("defaults", "vars"):
        f = ROLES / role / part / "main.yml"
        if f.exists():
            variables.update(_trust(yaml.safe_load(f.read_text())))
    variables.update(_trust(overrides))
    variables["ansible_facts"] = {**HOSTS[host], "kernel": KERNEL}
    variables["inventory_hostname"] = host
    return Templar(loader=DataLoader(), variables=variables)


def value(t: Templar, name: str) -> Any:
    out = t.template(t.available_variables[name])
    return out.strip() if isinstance(out, str) else out


@pytest.mark.parametrize(("host", "branch"), list(EXPECTED_NVIDIA))
def test_nvidia_driver_decisions(host: str, branch: str) -> None:
    t = render("nvidia_driver", host, nvidia_driver_branch=branch)
    for name, want in EXPECTED_NVIDIA[(host, branch)].items():
        got = (value(t, "nvidia_driver_repo_url") + "/" + value(t, "nvidia_driver_cuda_keyring_deb")
               if name == "keyring_deb_url" else value(t, name))
        assert got == want, f"{host} {branch}: {name}"


def test_fabric_manager_follows_nvswitch_devices() -> None:
    for setting, nvswitches, want in [("auto", 0, False), ("auto", 6, True), ("no", 6, False), ("yes", 0, True)]:
        t = render("nvidia_driver", "rhel9-x86_64", nvidia_driver_fabricmanager=setting,
                   nvidia_driver_nvswitch_count=nvswitches)
        assert bool(value(t, "nvidia_driver_fm_wanted")) is want, (setting, nvswitches)
    t = render("nvidia_driver", "rhel9-x86_64", nvidia_driver_fabricmanager="yes")
    # NVIDIA/gpu-driver-container@091f60d rhel9/install.sh:101-121: the names from 580, at the driver's version
    assert value(t, "nvidia_driver_dnf_fm_packages") == ["nvidia-fabricmanager", "libnvidia-nscq"]


def test_unsupported_architecture_is_named_by_preflight() -> None:
    t = render("nvidia_driver", "ubuntu2404-x86_64")
    t.available_variables = {**t.available_variables,
                             "ansible_facts": {**HOSTS["ubuntu2404-x86_64"], "architecture": "ppc64le"}}
    assert value(t, "nvidia_driver_arch") == "unsupported"
    preflight = yaml.safe_load((ROLES / "preflight" / "defaults" / "main.yml").read_text())
    assert preflight["preflight_supported_architectures"] == ["x86_64", "aarch64"]


def test_ubuntu_before_590_lock_keeps_the_toolkit_out() -> None:
    import re

    t = render("nvidia_driver", "ubuntu2204-x86_64")
    pattern = value(t, "nvidia_driver_apt_lock_packages").strip("/")
    for pkg in ("nvidia-open-580", "nvidia-dkms-580-open", "libnvidia-compute-580", "nvidia-fabricmanager-580",
                "nvidia-kernel-common-580", "libnvidia-nscq-580", "cuda-drivers-580"):
        assert re.search(pattern, pkg), pkg
    for pkg in ("nvidia-container-toolkit", "nvidia-container-toolkit-base", "libnvidia-container1",
                "libnvidia-container-tools", "cuda-toolkit-12-8"):
        assert not re.search(pattern, pkg), pkg


@pytest.mark.parametrize("host", ["ubuntu2204-x86_64", "ubuntu2404-aarch64", "rhel9-x86_64"])
def test_container_toolkit_decisions(host: str) -> None:
    t = render("container_toolkit", host)
    for name, want in EXPECTED_TOOLKIT.items():
        assert value(t, name) == want, name


@pytest.mark.parametrize("host", list(EXPECTED_DOCKER))
def test_docker_decisions(host: str) -> None:
    t = render("docker", host)
    for name, want in EXPECTED_DOCKER[host].items():
        assert value(t, name) == want, name
    conflicts = value(t, "docker_conflicting_packages")[HOSTS[host]["os_family"]]
    assert CONFLICTS[HOSTS[host]["os_family"]] <= set(conflicts)


def test_mirrors_replace_every_repository_url() -> None:
    t = render("nvidia_driver", "ubuntu2404-aarch64", nvidia_driver_repo_base="http://mirror.lab/cuda/")
    assert value(t, "nvidia_driver_apt_line") == ("deb [signed-by=/usr/share/keyrings/cuda-archive-keyring.gpg] "
                                                  "http://mirror.lab/cuda/ubuntu2404/sbsa/ /")
    t = render("container_toolkit", "ubuntu2404-x86_64", container_toolkit_repo_base="http://mirror.lab/tk/stable")
    assert "http://mirror.lab/tk/stable/deb/$(ARCH) /" in value(t, "container_toolkit_apt_line")
    t = render("docker", "rhel9-aarch64" if "rhel9-aarch64" in HOSTS else "rhel9-x86_64",
               docker_repo_base="http://mirror.lab/docker")
    assert value(t, "docker_dnf_key_url") == "http://mirror.lab/docker/rhel/gpg"


def test_daemon_json_merges_lab_options_and_keeps_nvidia_ctk_runtimes() -> None:
    import json

    src = trust_as_template((ROLES / "docker" / "templates" / "daemon.json.j2").read_text())
    t = render("docker", "ubuntu2404-x86_64", container_toolkit_daemon_json_owner="nvidia_ctk",
               docker_daemon_options={"registry-mirrors": ["https://m.lab"], "log-opts": {"max-file": "5"}},
               docker_kept_from_file={"runtimes": {"nvidia": {"path": "/usr/bin/nvidia-container-runtime"}}},
               container_toolkit_enabled=True)
    cfg = json.loads(t.template(src))
    assert cfg["runtimes"] == {"nvidia": {"path": "/usr/bin/nvidia-container-runtime"}}
    assert cfg["live-restore"] is True and cfg["log-opts"] == {"max-size": "50m", "max-file": "5"}
    assert cfg["registry-mirrors"] == ["https://m.lab"]
