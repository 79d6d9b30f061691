"""The container lab: two Debian hosts reached over SSH as a non-root sudoer, deployed together by site.yml in
rolling batches, NVIDIA's CUDA/toolkit and Docker's repositories from a signed local mirror (tests/lab/).

What runs for real on the lab hosts: every role, over SSH with become - preflight, proxy, nvidia_driver and
container_toolkit unchanged against the mirror (stand-in packages), docker from the mirror of Docker's repository,
hf_secret, inference_stack (llama.cpp from an image tarball) and verify (healthcheck, smoke-bench, GPU samplers
with the stand-in nvidia-smi). Not here: a kernel module (a reboot is simulated by writing the loaded version the
role reads), the hosts' own dockerd (they drive this machine's through its socket; no privileged containers
here), the GPU container test (no GPU), and Ubuntu/RHEL packages (tests/unit/test_ansible_decisions.py).
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import free_port
from lab.lab import Host, Lab, sh

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
CACHE = Path(os.environ.get("GIK_CACHE", Path.home() / ".cache" / "gik"))
LOADED = "/run/gik-lab/nvidia-version"  # the loaded module's version, as the role reads it (see module doc)


def playbook(inventory: Path, *args: str, timeout: float = 1200) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN / "ansible-playbook"), "site.yml", "-i", str(inventory), *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "ANSIBLE_FORCE_COLOR": "0", "GIK_BIN": str(BIN)})


def recaps(out: str) -> dict[str, dict[str, int]]:
    found = re.findall(r"^(lab\d)\s*:\s*ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", out, re.M)
    assert found, out[-3000:]
    return {h: dict(zip(("ok", "changed", "unreachable", "failed"), map(int, v), strict=True)) for h, *v in found}


def official_setup(host: Host, lab: Lab) -> None:
    """NVIDIA's documented steps, done by hand on a host before the kit arrives (with the lab's mirror)."""
    deb = lab.tmp / "mirror" / "cuda" / "debian12" / "x86_64" / "cuda-keyring_1.1-1_all.deb"
    sh("docker", "cp", str(deb), f"{host.container}:/tmp/cuda-keyring_1.1-1_all.deb")
    host.exec("dpkg -i /tmp/cuda-keyring_1.1-1_all.deb >/dev/null && sed -i "
              f"'s#https://developer.download.nvidia.com/compute/cuda/repos#{lab.mirror_url}/cuda#' "
              "/etc/apt/sources.list.d/cuda-debian12-x86_64.list")
    host.exec(f"python3 -c \"import urllib.request,sys; sys.stdout.buffer.write(urllib.request.urlopen("
              f"'{lab.mirror_url}/libnvidia-container/gpgkey').read())\" | gpg --dearmor -o "
              "/usr/share/keyrings/nvidia-container-toolkit-keyring.gpg && echo 'deb [signed-by=/usr/share/keyrings/"
              f"nvidia-container-toolkit-keyring.gpg] {lab.mirror_url}/libnvidia-container/stable/deb/$(ARCH) /' "
              "> /etc/apt/sources.list.d/nvidia-container-toolkit.list")
    r = host.exec("apt-get update 2>&1", check=False)
    assert r.returncode == 0 and "Conflicting" not in r.stdout, r.stdout


def previous_kit_setup(host: Host, lab: Lab) -> None:
    """What the kit's earlier role left on a host: its own list and key path for NVIDIA's repository (with the
    official cuda-keyring setup beside it, apt refuses every source: two Signed-By values for one URI)."""
    sh("docker", "cp", str(lab.tmp / "mirror" / "libnvidia-container" / "gpgkey"),
       f"{host.container}:/etc/apt/keyrings/nvidia-cuda.asc")
    host.exec(f"echo 'deb [signed-by=/etc/apt/keyrings/nvidia-cuda.asc] {lab.mirror_url}/cuda/debian12/x86_64/ /' "
              "> /etc/apt/sources.list.d/nvidia-cuda.list")


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    if shutil.which("gpg") is None or shutil.which("ssh-keygen") is None:
        pytest.fail("the container lab needs gpg and ssh-keygen on this machine", pytrace=False)
    tmp = tmp_path_factory.mktemp("lab")
    tarball = tmp / "llama.cpp-server.tar"  # the air-gapped path: the engine image as a `docker save` tarball
    sh("docker", "save", "-o", str(tarball), "local/llama.cpp:server")
    t0 = time.monotonic()
    env = Lab.start(tmp, 2, [CACHE / "models", tarball])
    print(f"\ncontainer lab up in {time.monotonic() - t0:.1f}s (image, signed mirror, 2 SSH hosts)")
    m = env.mirror_url
    token = "hf_lab" + secrets.token_hex(10)
    group_vars = {
        # hardware the lab does not have: the driver and toolkit roles run anyway, against the mirror
        "inference_stack_gpu": False, "nvidia_driver_enabled": True, "container_toolkit_enabled": True,
        "container_toolkit_gpu_test": False, "nvidia_driver_skip_reboot": True,
        "nvidia_driver_loaded_version_file": LOADED,
        # an exact driver lock (the mirror also serves the newer 580.105.08) and no systemd in the lab hosts
        "nvidia_driver_version": "580.95.05", "nvidia_driver_manage_services": False,
        "container_toolkit_manage_services": False,
        # the air-gapped mirrors
        "nvidia_driver_repo_base": f"{m}/cuda", "container_toolkit_repo_base": f"{m}/libnvidia-container/stable",
        "container_toolkit_repo_key_url": f"{m}/libnvidia-container/gpgkey",
        "docker_install_from": "docker", "docker_repo_base": f"{m}/docker", "docker_manage_service": False,
        "docker_daemon_options": {"registry-mirrors": [f"{m}:5000"], "exec-opts": ["native.cgroupdriver=cgroupfs"]},
        # the light stack: llama.cpp from its tarball
        "inference_stack_engines": ["llamacpp"], "inference_stack_bind_address": "127.0.0.1",
        "inference_stack_models_dir": str(CACHE / "models"), "inference_stack_image_tarballs": [str(tarball)],
        "inference_stack_wait_timeout": 600, "preflight_disk_path": "/var/lib/docker", "preflight_min_free_disk_gb": 2,
        "verify_gpu_memory": True, "verify_num_prompts": 2, "verify_output_len": 8,
        "verify_reports_dir": str(tmp / "reports"), "vault_hf_token": token, "vault_vllm_api_key": "",
    }
    host_vars = {h.name: {"inference_stack_dir": str(h.root / "opt"),
                          "inference_stack_project_name": f"{env.tag}-{h.name}",
                          "inference_stack_llamacpp_port": free_port()} for h in env.hosts}
    inventory = env.inventory(group_vars, host_vars)
    official_setup(env.hosts[1], env)
    previous_kit_setup(env.hosts[0], env)
    yield {"lab": env, "inventory": inventory, "token": token, "host_vars": host_vars, "tmp": tmp}
    for h in env.hosts:
        sh("docker", "compose", "-p", host_vars[h.name]["inference_stack_project_name"], "down", "-v",
           "--remove-orphans", check=False)
    env.stop()


def test_lab_rolling_deploy_staged_reboot_and_idempotence(lab: dict) -> None:
    env: Lab = lab["lab"]
    # --check on fresh, offline hosts (nothing but the mirror): succeeds, changes nothing
    fresh = playbook(lab["inventory"], "--check")
    assert fresh.returncode == 0, fresh.stdout[-6000:]
    assert all(r["failed"] == 0 for r in recaps(fresh.stdout).values())
    # ... and says what a real run would install: the driver and toolkit packages (issue 20 item 6)
    assert all(r["changed"] > 0 for r in recaps(fresh.stdout).values()), fresh.stdout[-6000:]
    kernel = env.hosts[0].exec("uname -r").stdout.strip()
    for h in ("lab1", "lab2"):
        assert (f"{h} would install: nvidia-open=580.95.05-*, nvidia-driver-pinning-580, linux-headers-{kernel}, "
                "linux-headers-amd64, dkms, cuda-toolkit-12-8") in fresh.stdout, fresh.stdout[-6000:]
        assert (f"{h} would install: nvidia-container-toolkit=1.18.0-1, nvidia-container-toolkit-base=1.18.0-1, "
                "libnvidia-container-tools=1.18.0-1, libnvidia-container1=1.18.0-1") in fresh.stdout
    assert "nvidia-open-580" not in fresh.stdout  # a package this Debian host would not install
    assert env.hosts[0].exec("ls /etc/apt/sources.list.d").stdout.split() == ["lab-distro.list", "nvidia-cuda.list"]
    assert env.hosts[0].exec("command -v docker nvidia-smi || echo none").stdout.strip() == "none"

    t0 = time.monotonic()
    first = playbook(lab["inventory"])
    t_first = time.monotonic() - t0
    assert first.returncode == 0, first.stdout[-8000:] + first.stderr[-2000:]
    rc = recaps(first.stdout)
    assert set(rc) == {"lab1", "lab2"} and all(r["failed"] == 0 and r["changed"] > 0 for r in rc.values())
    assert lab["token"] not in first.stdout + first.stderr
    # rolling: the deploy play ran one host per batch (canary first), each batch verified before the next
    assert first.stdout.count("PLAY [Provision, deploy and verify GPU inference hosts]") == 2
    verified = [m.start() for m in re.finditer(r"TASK \[verify : Run healthcheck once", first.stdout)]
    assert len(verified) == 2 and first.stdout.index("TASK [nvidia_driver", verified[0]) > verified[0]
    # lab1 is fresh for NVIDIA's repository: cuda-keyring wrote the very list the role writes (that copy reports
    # no change), so the cache refresh is decided from the keyring install and apt's missing index
    assert re.search(r"TASK \[nvidia_driver : Refresh apt's cache[^\n]*\n+changed: \[lab1\]", first.stdout)
    assert env.hosts[0].exec("cat /etc/apt/sources.list.d/cuda-debian12-x86_64.list").stdout == (
        f"deb [signed-by=/usr/share/keyrings/cuda-archive-keyring.gpg] {env.mirror_url}/cuda/debian12/x86_64/ /\n")
    assert not re.search(r"TASK \[nvidia_driver : Point the documented source list[^\n]*\n+changed: \[lab1\]",
                         first.stdout)
    # staged driver install: a reboot is pending and said so; the play goes on
    for h in ("lab1", "lab2"):
        assert f"{h}: reboot pending - NVIDIA driver 580.95.05 is installed, no module is loaded" in first.stdout

    for host in env.hosts:
        # apt works with the documented keyring/list names, also where they were set up by hand beforehand
        upd = host.exec("apt-get update 2>&1", check=False)
        assert upd.returncode == 0 and "Conflicting" not in upd.stdout and "Err:" not in upd.stdout, upd.stdout
        lists = sorted(host.exec("ls /etc/apt/sources.list.d").stdout.split())  # the previous kit's list is gone
        # Docker's repository as Docker's docs write it now (deb822 docker.sources, roles/docker)
        assert lists == ["cuda-debian12-x86_64.list", "docker.sources", "lab-distro.list",
                         "nvidia-container-toolkit.list"]
        assert host.exec("test -f /etc/apt/preferences.d/cuda-repository-pin-600 && test -f "
                         "/etc/apt/preferences.d/nvidia-driver-pinning-580 && echo ok").stdout.strip() == "ok"
        pkgs = dict(line.split() for line in host.exec(
            "dpkg-query -W -f '${Package} ${Version}\\n' 'nvidia-*' 'libnvidia-*' 'linux-headers-*' dkms "
            "docker-ce-cli 2>/dev/null", check=False).stdout.splitlines() if len(line.split()) == 2)
        for name in ("nvidia-container-toolkit", "nvidia-container-toolkit-base", "libnvidia-container-tools",
                     "libnvidia-container1"):
            assert pkgs[name] == "1.18.0-1", pkgs
        assert pkgs["nvidia-open"] == "580.95.05-1" and "dkms" in pkgs and any(p.startswith("linux-headers-")
                                                                               for p in pkgs)
        assert "linux-headers-amd64" in pkgs  # Debian's metapackage: the next kernel's headers come with it
        # the locks hold with real apt (issue 20 item 3): the mirror serves 580.105.08-1 and toolkit 1.18.1-1, the
        # exact lock (580.95.05-*) keeps the driver, the hold keeps the toolkit; a plain upgrade moves nothing
        policy = host.exec("apt-cache policy nvidia-open nvidia-container-toolkit").stdout
        assert re.search(r"nvidia-open:\n\s+Installed: 580\.95\.05-1\n\s+Candidate: 580\.95\.05-1\n", policy), policy
        assert "580.105.08-1" in policy and "1.18.1-1" in policy, policy
        assert set(host.exec("apt-mark showhold").stdout.split()) >= {
            "nvidia-container-toolkit", "nvidia-container-toolkit-base", "libnvidia-container-tools",
            "libnvidia-container1"}
        upgrade = host.exec("apt-get upgrade --simulate 2>&1").stdout
        assert "Inst " not in upgrade and "0 upgraded, 0 newly installed" in upgrade, upgrade
        daemon = json.loads(host.exec("cat /etc/docker/daemon.json").stdout)
        assert daemon["live-restore"] is True and daemon["log-opts"] == {"max-size": "50m", "max-file": "3"}
        assert daemon["runtimes"]["nvidia"]["path"] == "nvidia-container-runtime"
        assert daemon["registry-mirrors"] == [f"{env.mirror_url}:5000"]  # the lab's own keys, merged
        assert daemon["exec-opts"] == ["native.cgroupdriver=cgroupfs"]
        opt = lab["host_vars"][host.name]["inference_stack_dir"]
        secret = host.exec(f"stat -c '%U %a' {opt}/secrets/hf_token")
        assert secret.stdout.split() == ["root", "400"]  # written with become by a non-root SSH user

        reports = lab["tmp"] / "reports" / host.name
        hc = json.loads((reports / "healthcheck.json").read_text())
        assert hc["healthy"] and [e["engine"] for e in hc["endpoints"]] == ["llamacpp"]
        assert (reports / "bench.json").is_file()
        pids = json.loads((reports / "gpu" / "pids.json").read_text())
        assert pids["llamacpp"], pids
        apps = (reports / "gpu" / "apps.csv").read_text().splitlines()
        gpus = (reports / "gpu" / "gpus.csv").read_text().splitlines()
        assert len(gpus) >= 2 and all(len(line.split(", ")) == 4 for line in gpus + apps), (apps, gpus)
        assert any(int(line.split(", ")[1]) in pids["llamacpp"] for line in apps), (apps, pids)
        if (BIN / "gpu-report").exists():  # the stand-in's per-process figure: the H100 fixture's llama-server
            bench = json.loads((reports / "bench.json").read_text())
            assert bench["endpoints"][0]["gpu_memory"]["engine_peak_mib"] == {"0": 3142.0}, bench["endpoints"][0]

    # a re-run (as after an interrupted first run): nothing changes, and the pending reboot is still detected
    t0 = time.monotonic()
    second = playbook(lab["inventory"])
    t_second = time.monotonic() - t0
    assert second.returncode == 0, second.stdout[-6000:]
    assert all(r["changed"] == 0 for r in recaps(second.stdout).values()), second.stdout[-6000:]
    assert second.stdout.count("reboot pending - NVIDIA driver 580.95.05 is installed") == 2
    print(f"\ncontainer lab site.yml: first run {t_first:.0f}s, second run {t_second:.0f}s (changed=0), 2 hosts")

    # the hosts "reboot": the module of the installed driver is loaded; the driver is verified with nvidia-smi
    for host in env.hosts:
        host.exec(f"mkdir -p {Path(LOADED).parent} && echo 580.95.05 > {LOADED}")
    after = playbook(lab["inventory"], "--tags", "nvidia_driver")
    assert after.returncode == 0 and "reboot pending" not in after.stdout, after.stdout[-4000:]
    assert after.stdout.count("driver 580.95.05, CUDA 13.0") == 2
    assert all(r["changed"] == 0 for r in recaps(after.stdout).values())

    # --check with settings given as strings on the command line (-e makes every value a string); one host: the
    # strings are read the same way everywhere (the second run above already checked both hosts change nothing)
    check = playbook(lab["inventory"], "--check", "--limit", "lab1", "-e", "inference_stack_gpu=false",
                     "-e", "nvidia_driver_enabled=true")
    assert check.returncode == 0, check.stdout[-4000:]
    assert set(recaps(check.stdout)) == {"lab1"}, check.stdout[-4000:]
    assert all(r["changed"] == 0 for r in recaps(check.stdout).values()), check.stdout[-4000:]

    # the testinfra suite, as a lab admin runs it: SSH as the non-root user, root checks through sudo.
    # Deselected: the port check looks inside the host's network namespace, and the lab's engines publish on
    # this machine's (sibling containers through the Docker socket).
    infra = subprocess.run([sys.executable, "-m", "pytest", str(ROOT / "tests" / "infra"), "-q", "-p",
                            "no:cacheprovider", "--hosts=ansible://gpu_hosts",
                            f"--ansible-inventory={lab['inventory']}", "--sudo", "-o", "addopts=",
                            "-k", "not ports_listen"],
                           cwd=ROOT, capture_output=True, text=True, timeout=600,
                           env={**os.environ, "PATH": f"{BIN}:{os.environ.get('PATH', '')}"})
    assert infra.returncode == 0, infra.stdout[-4000:] + infra.stderr[-2000:]
    assert lab["token"] not in infra.stdout + infra.stderr


def test_lab_branch_bump_upgrades_and_flags_the_reboot(lab: dict) -> None:
    host = lab["lab"].hosts[1]
    host.exec(f"mkdir -p {Path(LOADED).parent} && echo 580.95.05 > {LOADED}")  # running 580
    bump = playbook(lab["inventory"], "--limit", host.name, "--tags", "nvidia_driver", "-e", "nvidia_driver_branch=590",
                    "-e", "nvidia_driver_version=")
    assert bump.returncode == 0, bump.stdout[-6000:]
    assert recaps(bump.stdout)[host.name]["changed"] > 0
    pending = "reboot pending - NVIDIA driver 590.44.01 is installed, module 580.95.05 is loaded"
    assert f"{host.name}: {pending}" in bump.stdout
    pkgs = host.exec("dpkg-query -W -f '${Package} ${Version} ${db:Status-Abbrev}\\n' nvidia-open "
                     "'nvidia-driver-pinning-*'", check=False).stdout
    pkgs = "\n".join(line for line in pkgs.splitlines() if line.endswith("ii "))
    assert "nvidia-open 590.44.01-1" in pkgs and "nvidia-driver-pinning-590" in pkgs
    assert "nvidia-driver-pinning-580" not in pkgs
    assert "Driver Version: 590.44.01" in host.exec("nvidia-smi").stdout
    again = playbook(lab["inventory"], "--limit", host.name, "--tags", "nvidia_driver",
                     "-e", "nvidia_driver_branch=590", "-e", "nvidia_driver_version=")
    assert again.returncode == 0 and recaps(again.stdout)[host.name]["changed"] == 0, again.stdout[-4000:]
    assert pending in again.stdout


def test_lab_toolkit_version_change_needs_the_upgrade_flag(lab: dict) -> None:
    host = lab["lab"].hosts[0]
    args = ("--limit", host.name, "--tags", "container_toolkit", "-e", "container_toolkit_version=1.17.8-1")
    gated = playbook(lab["inventory"], *args)
    assert gated.returncode != 0 and "container_toolkit_allow_upgrade=true" in gated.stdout, gated.stdout[-3000:]
    assert "daemon-reload" in gated.stdout and recaps(gated.stdout)[host.name]["changed"] == 0
    moved = playbook(lab["inventory"], *args, "-e", "container_toolkit_allow_upgrade=true")
    assert moved.returncode == 0, moved.stdout[-4000:]
    versions = set(host.exec("dpkg-query -W -f '${Version}\\n' nvidia-container-toolkit nvidia-container-toolkit-base "
                             "libnvidia-container-tools libnvidia-container1").stdout.split())
    assert versions == {"1.17.8-1"}  # all four pinned packages, downgraded to the pin


def test_lab_the_controller_reached_over_ssh_is_not_rebooted(lab: dict) -> None:
    """A GPU host that is also the controller, listed with an SSH address: its /etc/machine-id is the
    controller's, so the play refuses to reboot it mid-play and says to reboot it by hand."""
    mid = Path("/etc/machine-id")
    if not mid.is_file() or not mid.read_text().strip():
        pytest.skip("this controller has no /etc/machine-id")
    host = lab["lab"].hosts[1]  # left by the branch bump: 590 installed, 580 loaded (a reboot is pending)
    host.exec(f"echo {mid.read_text().strip()} > /etc/machine-id")
    try:
        r = playbook(lab["inventory"], "--limit", host.name, "--tags", "nvidia_driver",
                     "-e", "nvidia_driver_branch=590", "-e", "nvidia_driver_version=",
                     "-e", "nvidia_driver_skip_reboot=false")
    finally:
        host.exec("rm -f /etc/machine-id")
    assert r.returncode == 0, r.stdout[-4000:]
    assert "is the machine running this play (same /etc/machine-id): it is not rebooted" in r.stdout
    assert "Reboot it by hand" in r.stdout
    assert re.search(r"TASK \[nvidia_driver : Reboot to load the installed driver[^\n]*\n+skipping: \[lab2\]", r.stdout)
    assert recaps(r.stdout)[host.name]["changed"] == 0


def test_lab_hgx_host_gets_fabric_manager_at_the_installed_driver_version(lab: dict) -> None:
    """Issue 20 items 1-2: an HGX-shaped host (stand-in NVSwitch PCI device, then an NVLink5 switch-management
    port) gets NVIDIA's Fabric Manager names for 580 at the INSTALLED driver's version (580.95.05-1, although the
    branch lock alone would allow 580.105.08-1), held with the driver; NVLink5 adds nvlsm and infiniband-diags."""
    host = lab["lab"].hosts[0]  # 580.95.05 installed and loaded (first test)
    sysfs = "/run/gik-lab/sys"
    host.exec(f"d={sysfs}/bus/pci/devices/0000:05:00.0 && mkdir -p $d && echo 0x10de > $d/vendor && "
              f"echo 0x068000 > $d/class && g={sysfs}/bus/pci/devices/0000:18:00.0 && mkdir -p $g && "
              "echo 0x10de > $g/vendor && echo 0x030200 > $g/class")
    args = ("--limit", host.name, "--tags", "nvidia_driver", "-e", f"nvidia_driver_sysfs={sysfs}",
            "-e", "nvidia_driver_version=")  # the branch lock only: Fabric Manager follows the installed driver
    r = playbook(lab["inventory"], *args)
    assert r.returncode == 0, r.stdout[-6000:]
    pkgs = dict(line.split() for line in host.exec(
        "dpkg-query -W -f '${Package} ${Version}\\n' nvidia-open 'nvidia-fabricmanager*' 'libnvidia-nscq*' nvlsm "
        "2>/dev/null", check=False).stdout.splitlines() if len(line.split()) == 2)
    assert pkgs == {"nvidia-open": "580.95.05-1", "nvidia-fabricmanager": "580.95.05-1",
                    "libnvidia-nscq": "580.95.05-1"}, pkgs
    held = set(host.exec("apt-mark showhold").stdout.split())
    assert {"nvidia-fabricmanager", "libnvidia-nscq", "nvidia-open", "nvidia-driver-cuda"} <= held, held
    upgrade = host.exec("apt-get upgrade --simulate 2>&1").stdout  # 580.105.08-1 is there: nothing moves
    assert "Inst " not in upgrade and "0 upgraded" in upgrade, upgrade
    again = playbook(lab["inventory"], *args)
    assert again.returncode == 0 and recaps(again.stdout)[host.name]["changed"] == 0, again.stdout[-4000:]

    host.exec(f"d={sysfs}/class/infiniband/mlx5_0/device && mkdir -p $d && printf 'PN:MCX750500B V3 SW_MNG' > $d/vpd")
    r = playbook(lab["inventory"], *args)
    assert r.returncode == 0, r.stdout[-6000:]
    assert host.exec("dpkg-query -W -f '${Status}\\n' nvlsm infiniband-diags").stdout.split("\n")[:2] == [
        "install ok installed", "install ok installed"]


def test_lab_cdi_without_etc_cdi(lab: dict) -> None:
    """Issue 20 item 4 on hosts without /etc/cdi: toolkit 1.18 leaves the one spec to NVIDIA's nvidia-cdi-refresh
    (/var/run/cdi/nvidia.yaml) and removes the /etc/cdi copy older kit versions wrote; a toolkit before 1.18 gets
    the spec generated into /var/run/cdi (nothing is copied into an /etc/cdi that does not exist)."""
    old, new = lab["lab"].hosts  # lab1: toolkit 1.17.8-1 (toolkit test), lab2: 1.18.0-1
    new.exec("mkdir -p /etc/cdi && echo 'kind: nvidia.com/gpu' > /etc/cdi/nvidia.yaml")  # what the old role wrote
    old.exec("rm -rf /etc/cdi /var/run/cdi")
    r = playbook(lab["inventory"], "--tags", "container_toolkit", "-e", "container_toolkit_cdi=true",
                 "-e", "container_toolkit_version=1.17.8-1", "--limit", old.name)
    assert r.returncode == 0, r.stdout[-6000:]
    assert old.exec("test -d /etc/cdi || echo absent").stdout.strip() == "absent"
    assert "kind: nvidia.com/gpu" in old.exec("cat /var/run/cdi/nvidia.yaml").stdout
    r = playbook(lab["inventory"], "--tags", "container_toolkit", "-e", "container_toolkit_cdi=true",
                 "--limit", new.name)
    assert r.returncode == 0, r.stdout[-6000:]
    assert new.exec("ls /etc/cdi").stdout.split() == []
