"""The container lab: Debian hosts reached over SSH as a non-root sudoer, an apt mirror on the lab network.

    lab = Lab.start(tmp, hosts=2)   # builds the host image once (label = hash of host.Dockerfile)
    ...                             # lab.inventory(settings) -> inventory path for ansible-playbook
    lab.stop()

Docker cannot run inside containers on this machine (no privileged containers), so each lab host drives this
machine's dockerd through its socket: the compose project a host deploys runs as sibling containers. Paths the
engines bind-mount (the host's project folder, the models) are mounted at identical paths so the daemon sees what
the lab host wrote.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from lab import mirror

HERE = Path(__file__).resolve().parent
IMAGE = "local/gik-lab-host"


def sh(*argv: str, check: bool = True, timeout: float = 300, **kw: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, check=check, capture_output=True, text=True, timeout=timeout, **kw)  # type: ignore[call-overload]


def image(variant: str | None = None) -> str:
    """The lab host image, built once per Dockerfile content. ``variant``: a host as labs have them, built on it
    from tests/lab/<variant>.Dockerfile (``dockerio``: the distribution's docker.io without compose, and a user
    without sudo rights)."""
    tag = hashlib.sha256((HERE / "host.Dockerfile").read_bytes()).hexdigest()[:12]
    ref = f"{IMAGE}:{tag}"
    if sh("docker", "image", "inspect", ref, check=False).returncode != 0:
        sh("docker", "build", "-q", "-t", ref, "-f", str(HERE / "host.Dockerfile"), str(HERE), timeout=900)
    if not variant:
        return ref
    dockerfile = HERE / f"{variant}.Dockerfile"
    vtag = hashlib.sha256((HERE / "host.Dockerfile").read_bytes() + dockerfile.read_bytes()).hexdigest()[:12]
    vref = f"{IMAGE}-{variant}:{vtag}"
    if sh("docker", "image", "inspect", vref, check=False).returncode != 0:
        sh("docker", "build", "-q", "-t", vref, "--build-arg", f"BASE={ref}", "-f", str(dockerfile), str(HERE),
           timeout=900)
    return vref


def _wait_ssh(port: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
                if s.recv(16).startswith(b"SSH-"):
                    return
        except OSError:
            time.sleep(0.3)
    raise RuntimeError(f"sshd on 127.0.0.1:{port} did not answer")


@dataclass
class Host:
    name: str
    container: str
    ssh_port: int
    root: Path  # mounted at the same path inside the host (its /opt for the kit)

    def exec(self, cmd: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return sh("docker", "exec", self.container, "sh", "-c", cmd, check=check)


@dataclass
class Lab:
    tmp: Path
    tag: str
    network: str
    mirror_url: str
    key: Path
    hosts: list[Host] = field(default_factory=list)
    containers: list[str] = field(default_factory=list)

    @classmethod
    def start(cls, tmp: Path, n_hosts: int, mounts: list[Path], variants: list[str | None] | None = None) -> Lab:
        """``variants``: per host, None (the lab host image) or an image variant (see :func:`image`)."""
        tag = "gik-lab-" + secrets.token_hex(3)
        ref = image()
        refs = [image(v) if v else ref for v in (variants or [])] + [ref] * n_hosts
        # cuda-keyring's list names the mirror, as the real package's names the real repository
        mirror.build(tmp / "mirror", cuda_url=f"http://{tag}-mirror/cuda/debian12/x86_64")
        key = tmp / "id_ed25519"
        sh("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key))
        sh("docker", "network", "create", tag)
        lab = cls(tmp, tag, tag, f"http://{tag}-mirror", key)
        try:
            lab._run_container(f"{tag}-mirror", ref, "-v", f"{tmp / 'mirror'}:/srv/mirror:ro",
                               "--network-alias", f"{tag}-mirror", "--entrypoint", "python3", ref,
                               "-m", "http.server", "80", "--directory", "/srv/mirror")
            pub = (tmp / "id_ed25519.pub").read_text()
            for i in range(1, n_hosts + 1):
                name = f"lab{i}"
                root = tmp / name
                root.mkdir()
                vols = ["-v", f"{root}:{root}", "-v", "/var/run/docker.sock:/var/run/docker.sock"]
                for m in mounts:
                    vols += ["-v", f"{m}:{m}:ro"]
                cname = f"{tag}-{name}"
                lab._run_container(cname, refs[i - 1], "--hostname", name, "-p", "127.0.0.1::22", *vols, refs[i - 1])
                port = int(sh("docker", "port", cname, "22/tcp").stdout.split(":")[-1])
                host = Host(name, cname, port, root)
                host.exec(f"echo '{pub.strip()}' > /home/lab/.ssh/authorized_keys && chown lab:lab "
                          "/home/lab/.ssh/authorized_keys && chmod 600 /home/lab/.ssh/authorized_keys")
                # the distribution's mirror (dkms, kernel headers); NVIDIA's and Docker's come from the roles
                host.exec(f"echo 'deb [signed-by=/etc/apt/keyrings/lab-distro.gpg] {lab.mirror_url}/distro/ /' "
                          "> /etc/apt/sources.list.d/lab-distro.list && mkdir -p /etc/apt/keyrings")
                lab.hosts.append(host)
            key_bin = tmp / "lab-distro.gpg"
            sh("gpg", "--dearmor", "-o", str(key_bin), str(tmp / "mirror" / "libnvidia-container" / "gpgkey"))
            for host in lab.hosts:
                sh("docker", "cp", str(key_bin), f"{host.container}:/etc/apt/keyrings/lab-distro.gpg")
                _wait_ssh(host.ssh_port)
        except BaseException:
            lab.stop()
            raise
        return lab

    def _run_container(self, name: str, ref: str, *args: str) -> None:
        self.containers.append(name)
        sh("docker", "run", "-d", "--name", name, "--network", self.network, "--label", f"gik-lab={self.tag}", *args)

    def inventory(self, group_vars: dict, host_vars: dict[str, dict] | None = None, hosts_only: list[str] | None = None,
                  name: str = "inventory") -> Path:
        """An Ansible inventory of the lab's hosts (``hosts_only``: those named) in tmp/<name>/hosts.yml, the
        settings in its group_vars/gpu_hosts/main.yml."""
        inv = self.tmp / name
        (inv / "group_vars" / "gpu_hosts").mkdir(parents=True, exist_ok=True)
        hosts = {}
        for h in self.hosts:
            if hosts_only is not None and h.name not in hosts_only:
                continue
            hosts[h.name] = {"ansible_host": "127.0.0.1", "ansible_port": h.ssh_port, "ansible_user": "lab",
                             "ansible_ssh_private_key_file": str(self.key),
                             "ansible_ssh_common_args": "-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null",
                             "ansible_python_interpreter": "/usr/bin/python3", **(host_vars or {}).get(h.name, {})}
        (inv / "hosts.yml").write_text(yaml.safe_dump({"all": {"children": {"gpu_hosts": {"hosts": hosts}}}}))
        (inv / "group_vars" / "gpu_hosts" / "main.yml").write_text(yaml.safe_dump(group_vars))
        return inv / "hosts.yml"

    def stop(self) -> None:
        for name in reversed(self.containers):
            sh("docker", "rm", "-f", "-v", name, check=False)
        sh("docker", "network", "rm", self.network, check=False)

    def dump(self) -> str:
        return json.dumps({"network": self.network, "hosts": [(h.name, h.ssh_port) for h in self.hosts]})
