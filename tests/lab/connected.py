"""The connected lab's real parts on this machine: a container registry (Debian's docker-registry, the CNCF
distribution) with or without a login, and an HTTP proxy (Debian's tinyproxy) as the engines' way out.

    reg = Registry.start(tmp, auth=("lab", password))   # 127.0.0.1:<port>; dockerd trusts 127.0.0.0/8 over HTTP
    reg.push("local/llama.cpp:server", "ggml-org/llama.cpp:server-lab")   # -> "127.0.0.1:<port>/ggml-org/..."
    proxy = Proxy.start(tmp)      # listens on every address; containers reach it at docker0's address
    ...; reg.stop(); proxy.stop()

Why a registry on 127.0.0.1 pulled by name rather than a `registry-mirrors` entry: the lab hosts drive THIS
machine's dockerd (tests/lab/lab.py), shared with every other test; a mirror entry takes a dockerd restart,
which would cut off their containers. dockerd allows plain HTTP to 127.0.0.0/8 by default, so a registry there
is pulled exactly as a lab's private registry is (``docker login`` first when it needs one).
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """Terminate ``proc`` (kill it after 10 s)."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


def _wait_port(host: str, port: int, proc: subprocess.Popen[bytes], log: Path, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args!r} exited with {proc.returncode}: {log.read_text(errors='replace')[-800:]}")
        try:
            with socket.create_connection((host, port), timeout=1):
                return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"nothing listens on {host}:{port} after {timeout:.0f}s")


def docker0_address() -> str:
    """This machine's address on Docker's default bridge: containers on any bridge network reach it."""
    out = subprocess.run(["ip", "-4", "-o", "addr", "show", "docker0"], capture_output=True, text=True).stdout
    m = re.search(r"inet (\d+\.\d+\.\d+\.\d+)/", out)
    if not m:
        raise RuntimeError("docker0 has no IPv4 address")
    return m.group(1)


@dataclass
class Registry:
    """docker-registry serving on 127.0.0.1:port; ``auth`` (user, password) turns on basic auth (htpasswd)."""

    port: int
    proc: subprocess.Popen[bytes]
    root: Path
    auth: tuple[str, str] | None

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    @classmethod
    def start(cls, tmp: Path, auth: tuple[str, str] | None = None) -> Registry:
        exe = shutil.which("docker-registry")
        if exe is None:
            raise RuntimeError("docker-registry is not installed (bash tests/setup.sh docker)")
        root = tmp / ("registry-auth" if auth else "registry")
        (root / "data").mkdir(parents=True)
        port = free_port()
        cfg = [
            "version: 0.1", "log:", "  level: warn", "storage:", "  filesystem:", f"    rootdirectory: {root / 'data'}",
            "  delete:", "    enabled: true", "http:", f"  addr: 127.0.0.1:{port}",
        ]
        if auth:
            import bcrypt  # paramiko's dependency, in the kit's venv

            user, password = auth
            htpasswd = root / "htpasswd"
            htpasswd.write_text(f"{user}:{bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=5)).decode()}\n")
            htpasswd.chmod(0o600)
            cfg += ["auth:", "  htpasswd:", "    realm: gik-lab", f"    path: {htpasswd}"]
        (root / "config.yml").write_text("\n".join(cfg) + "\n")
        log = root / "registry.log"
        with log.open("wb") as fh:
            proc = subprocess.Popen([exe, "serve", str(root / "config.yml")], stdout=fh, stderr=subprocess.STDOUT,
                                    start_new_session=True)
        _wait_port("127.0.0.1", port, proc, log)
        return cls(port, proc, root, auth)

    def push(self, local_ref: str, name: str) -> str:
        """Tag ``local_ref`` as <registry>/<name> and push it (logging in through a private Docker config, so this
        machine's ~/.docker/config.json is untouched); the tag is removed again, the pushed reference returned."""
        ref = f"{self.host}/{name}"
        env = {**os.environ, "DOCKER_CONFIG": str(self.root / "docker-config")}
        if self.auth:
            subprocess.run(["docker", "login", "--username", self.auth[0], "--password-stdin", self.host],
                           input=self.auth[1], env=env, check=True, capture_output=True, text=True, timeout=60)
        subprocess.run(["docker", "tag", local_ref, ref], check=True, capture_output=True, timeout=60)
        try:
            r = subprocess.run(["docker", "push", ref], env=env, capture_output=True, text=True, timeout=600)
            if r.returncode != 0:
                raise RuntimeError(f"docker push {ref}: {r.stderr[-800:]}")
        finally:
            subprocess.run(["docker", "rmi", ref], capture_output=True, timeout=60)
        return ref

    def stop(self) -> None:
        _stop(self.proc)


@dataclass
class Proxy:
    """tinyproxy on every address of this machine; ``log`` names every request line (never headers)."""

    port: int
    proc: subprocess.Popen[bytes]
    log: Path

    @classmethod
    def start(cls, tmp: Path) -> Proxy:
        exe = shutil.which("tinyproxy")
        if exe is None:
            raise RuntimeError("tinyproxy is not installed (bash tests/setup.sh docker)")
        root = tmp / "proxy"
        root.mkdir()
        port = free_port("0.0.0.0")
        log = root / "tinyproxy.log"
        (root / "tinyproxy.conf").write_text("\n".join([
            f"Port {port}", "Timeout 600", f'LogFile "{log}"', "LogLevel Connect", "MaxClients 100",
            "Allow 127.0.0.1", "Allow 172.16.0.0/12", "Allow 10.0.0.0/8", "Allow 192.168.0.0/16",
            "DisableViaHeader Yes",
        ]) + "\n")
        out = root / "stdout.log"
        with out.open("wb") as fh:
            proc = subprocess.Popen([exe, "-d", "-c", str(root / "tinyproxy.conf")], stdout=fh,
                                    stderr=subprocess.STDOUT, start_new_session=True)
        _wait_port("127.0.0.1", port, proc, out)
        return cls(port, proc, log)

    def requests(self) -> list[str]:
        """The request lines the proxy forwarded ("GET http://host/path HTTP/1.1")."""
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return re.findall(r"Request \(file descriptor \d+\): (.+)$", text, re.M)

    def stop(self) -> None:
        _stop(self.proc)
