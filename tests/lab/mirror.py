"""A local mirror of NVIDIA's CUDA and Container Toolkit repositories and of Docker's, with stand-in packages.

Same layout, names, versions and dependencies as the real repositories (what an air-gapped lab's mirror
serves), built with dpkg-deb and signed with a throw-away key:

    <root>/cuda/debian12/x86_64/                  flat repo + cuda-keyring_1.1-1_all.deb   (label "NVIDIA CUDA")
    <root>/libnvidia-container/gpgkey             armoured key, as https://nvidia.github.io/libnvidia-container/gpgkey
    <root>/libnvidia-container/stable/deb/amd64/  flat repo (the list's `deb/$(ARCH) /`)
    <root>/docker/debian/gpg, dists/bookworm/stable/binary-amd64/, pool/
    <root>/distro/                                dkms and linux-headers-<running kernel> (the distribution mirror)

Stand-ins: the driver packages install tests/lab/standin/nvidia-smi, which prints the real H100 output of
tests/fixtures/nvidia with the package's driver version; docker-ce-cli and docker-compose-plugin carry this
machine's real docker CLI and compose plugin (the lab talks to this machine's dockerd through its socket).

NVIDIA's package names and version strings are GENERATED from tests/fixtures/nvidia/packages.yml (the table that
cites NVIDIA's install scripts and guides), never from the roles: driver releases with their real Debian strings
(580.95.05-1, a newer 580.105.08-1, 590.44.01-1), Fabric Manager/NSCQ by branch, nvlsm, the toolkit releases
(1.17.8-1, 1.18.0-1 and a newer 1.18.1-1), so the roles' locks and holds meet real apt version matching.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import platform
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
FIXTURES = HERE.parent / "fixtures" / "nvidia"
TABLE = yaml.safe_load((FIXTURES / "packages.yml").read_text())
# (branch, Debian version string) of every release the table records: the CUDA repository's debian12 strings
DRIVERS = [(r["version"].split(".")[0], r["debian"]) for r in TABLE["driver_releases"]]
TOOLKITS = [r["version"] for r in TABLE["toolkit_releases"]]
TOOLKIT_PACKAGES = TABLE["toolkit"]["packages"]
NVLINK5 = TABLE["nvlink5"]["packages"]  # nvlsm (NVIDIA's CUDA repository), infiniband-diags (the distribution's)
CUDA_TOOLKIT = "12.8.1-1"
CUDA_LIST = "deb [signed-by=/usr/share/keyrings/cuda-archive-keyring.gpg] {url}/ /\n"
NVIDIA_CUDA_URL = "https://developer.download.nvidia.com/compute/cuda/repos/debian12/x86_64"


@dataclass
class Pkg:
    name: str
    version: str
    arch: str = "amd64"
    depends: str = ""
    extra: dict[str, str] = field(default_factory=dict)
    files: dict[str, bytes | Path] = field(default_factory=dict)  # path in the package -> content or a file
    modes: dict[str, int] = field(default_factory=dict)


def _run(*argv: str, **kw: object) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(argv, check=True, capture_output=True, **kw)  # type: ignore[call-overload]


def build_deb(pkg: Pkg, out_dir: Path, work: Path) -> Path:
    root = work / f"{pkg.name}_{pkg.version}"
    (root / "DEBIAN").mkdir(parents=True)
    control = [f"Package: {pkg.name}", f"Version: {pkg.version}", f"Architecture: {pkg.arch}",
               "Maintainer: gpu-inference-kit lab <lab@localhost>", "Priority: optional", "Section: misc"]
    if pkg.depends:
        control.append(f"Depends: {pkg.depends}")
    control += [f"{k}: {v}" for k, v in pkg.extra.items()]
    control.append(f"Description: stand-in {pkg.name} for the gpu-inference-kit container lab")
    (root / "DEBIAN" / "control").write_text("\n".join(control) + "\n")
    for rel, content in pkg.files.items():
        dest = root / rel.lstrip("/")
        dest.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, Path):
            shutil.copyfile(content, dest)
        else:
            dest.write_bytes(content)
        dest.chmod(pkg.modes.get(rel, 0o644))
    deb = out_dir / f"{pkg.name}_{pkg.version}_{pkg.arch}.deb"
    _run("dpkg-deb", "--root-owner-group", "-Znone", "--build", str(root), str(deb))
    return deb


def _hashes(data: bytes) -> tuple[str, str]:
    return hashlib.md5(data).hexdigest(), hashlib.sha256(data).hexdigest()


def _packages_index(debs: list[Path], base: Path, prefix: str = "./") -> bytes:
    entries = []
    for deb in sorted(debs):
        control = _run("dpkg-deb", "-f", str(deb)).stdout.decode().rstrip("\n")
        data = deb.read_bytes()
        md5, sha = _hashes(data)
        rel = os.path.relpath(deb, base)
        entries.append(f"{control}\nFilename: {prefix}{rel}\nSize: {len(data)}\nMD5sum: {md5}\nSHA256: {sha}\n")
    return "\n".join(entries).encode()


def _release(files: dict[str, bytes], fields: dict[str, str]) -> str:
    lines = [f"{k}: {v}" for k, v in fields.items()]
    lines.append("Date: " + datetime.now(UTC).strftime("%a, %d %b %Y %H:%M:%S UTC"))
    lines.append("MD5Sum:")
    lines += [f" {_hashes(d)[0]} {len(d)} {n}" for n, d in files.items()]
    lines.append("SHA256:")
    lines += [f" {_hashes(d)[1]} {len(d)} {n}" for n, d in files.items()]
    return "\n".join(lines) + "\n"


class Signer:
    """A throw-away OpenPGP key (gpg) that signs the mirror's Release files."""

    def __init__(self, home: Path) -> None:
        self.home = home
        home.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.env = {**os.environ, "GNUPGHOME": str(home)}
        _run("gpg", "--batch", "--passphrase", "", "--quick-gen-key", "gik lab mirror <lab@localhost>",
             "ed25519", "sign", "never", env=self.env)
        self.armored = _run("gpg", "--armor", "--export", env=self.env).stdout
        self.binary = _run("gpg", "--export", env=self.env).stdout

    def sign(self, release: Path) -> None:
        _run("gpg", "--batch", "--yes", "--clearsign", "-o", str(release.parent / "InRelease"), str(release),
             env=self.env)
        _run("gpg", "--batch", "--yes", "-abs", "-o", str(release.parent / "Release.gpg"), str(release), env=self.env)


def flat_repo(repo: Path, debs: list[Path], signer: Signer, label: str) -> None:
    index = _packages_index(debs, repo)
    (repo / "Packages").write_bytes(index)
    (repo / "Packages.gz").write_bytes(gzip.compress(index, mtime=0))
    rel = repo / "Release"
    rel.write_text(_release({"Packages": index, "Packages.gz": gzip.compress(index, mtime=0)},
                            {"Origin": label, "Label": label, "Architecture": "amd64"}))
    signer.sign(rel)


def dists_repo(root: Path, debs: list[Path], signer: Signer, suite: str, component: str, label: str) -> None:
    index = _packages_index(debs, root, prefix="")
    bin_dir = root / "dists" / suite / component / "binary-amd64"
    bin_dir.mkdir(parents=True, exist_ok=True)
    (bin_dir / "Packages").write_bytes(index)
    (bin_dir / "Packages.gz").write_bytes(gzip.compress(index, mtime=0))
    name = f"{component}/binary-amd64/Packages"
    rel = root / "dists" / suite / "Release"
    rel.write_text(_release({name: index, name + ".gz": gzip.compress(index, mtime=0)},
                            {"Origin": label, "Label": label, "Suite": suite, "Codename": suite,
                             "Architectures": "amd64", "Components": component}))
    signer.sign(rel)


def _in(branch: int, rule: str) -> bool:
    op, num = re.fullmatch(r"(>=|<)(\d+)", rule).groups()  # type: ignore[union-attr]
    return branch >= int(num) if op == ">=" else branch < int(num)


def fabric_manager_names(branch: str) -> list[str]:
    """Fabric Manager and NSCQ package names of a branch in NVIDIA's apt repositories (the cited table)."""
    row = next(r for r in TABLE["fabric_manager"] if r["family"] == "Debian" and _in(int(branch), r["branches"]))
    return [p.format(branch=branch) for p in row["packages"]]


def _driver_pkgs(branch: str, version: str, pinning: bool) -> list[Pkg]:
    share = {f"/usr/share/gik-standin/{f.name}": f for f in FIXTURES.glob("h100-*.txt")}
    upstream = version.split("-")[0]
    fm = fabric_manager_names(branch)
    pin = (f"Package: nvidia-open nvidia-driver-cuda nvidia-kernel-open-dkms {' '.join(fm)}\n"
           f"Pin: version {branch}.*\nPin-Priority: 1000\n").encode()
    return [
        *([Pkg(f"nvidia-driver-pinning-{branch}", "1.0-1", "all",
               extra={"Provides": "nvidia-driver-pinning", "Conflicts": "nvidia-driver-pinning"},
               files={f"/etc/apt/preferences.d/nvidia-driver-pinning-{branch}": pin})] if pinning else []),
        Pkg("nvidia-open", version, depends=f"nvidia-driver-cuda (= {version}), nvidia-kernel-open-dkms (= {version})"),
        Pkg("nvidia-driver-cuda", version,
            files={"/usr/bin/nvidia-smi": HERE / "standin" / "nvidia-smi",
                   "/usr/share/gik-standin/driver-version": (upstream + "\n").encode(), **share},
            modes={"/usr/bin/nvidia-smi": 0o755}),
        Pkg("nvidia-kernel-open-dkms", version, depends="dkms"),
        *(Pkg(name, version) for name in fm),
    ]


def build(root: Path, cuda_url: str = NVIDIA_CUDA_URL) -> dict[str, str]:
    """Build the whole mirror under root; returns facts the lab needs (kernel, versions, key).

    cuda_url: the URL the cuda-keyring stand-in's list names. The lab gives the mirror's own URL, so the package
    writes exactly the line the role writes (as NVIDIA's real package does for NVIDIA's real repository)."""
    root.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="gik-mirror-"))
    try:
        signer = Signer(work / "gnupg")
        kernel = platform.release()
        # NVIDIA CUDA repository (debian12/x86_64): keyring package, driver branches 580 and 590, CUDA toolkit
        cuda = root / "cuda" / "debian12" / "x86_64"
        cuda.mkdir(parents=True)
        pkgs = [Pkg("cuda-keyring", "1.1-1", "all", files={
            "/usr/share/keyrings/cuda-archive-keyring.gpg": signer.binary,
            "/etc/apt/sources.list.d/cuda-debian12-x86_64.list": CUDA_LIST.format(url=cuda_url).encode()}),
            Pkg("cuda-toolkit-12-8", CUDA_TOOLKIT)]
        for i, (branch, version) in enumerate(DRIVERS):
            pkgs += _driver_pkgs(branch, version, pinning=branch not in [b for b, _ in DRIVERS[:i]])
        pkgs.append(Pkg(NVLINK5[0], "1.0-1"))  # nvlsm: no version string in the sources read; a stand-in one
        debs = [build_deb(p, cuda, work) for p in pkgs]
        keyring = next(d for d in debs if d.name.startswith("cuda-keyring"))
        keyring.rename(cuda / "cuda-keyring_1.1-1_all.deb")
        debs[debs.index(keyring)] = cuda / "cuda-keyring_1.1-1_all.deb"
        flat_repo(cuda, debs, signer, "NVIDIA CUDA")
        # NVIDIA Container Toolkit repository: the four packages the install guide pins, two versions
        tk = root / "libnvidia-container" / "stable" / "deb" / "amd64"
        tk.mkdir(parents=True)
        (root / "libnvidia-container" / "gpgkey").write_bytes(signer.armored)
        tk_pkgs = []
        toolkit, base, tools, lib = TOOLKIT_PACKAGES
        for v in TOOLKITS:
            tk_pkgs += [
                Pkg(lib, v),
                Pkg(tools, v, depends=f"{lib} (= {v})"),
                Pkg(base, v, files={"/usr/bin/nvidia-ctk": HERE / "standin" / "nvidia-ctk"},
                    modes={"/usr/bin/nvidia-ctk": 0o755}),
                Pkg(toolkit, v, depends=f"{base} (= {v}), {tools} (= {v})"),
            ]
        flat_repo(tk, [build_deb(p, tk, work) for p in tk_pkgs], signer, "https://nvidia.github.io/libnvidia-container")
        # Docker's repository (dists layout): the CLI and compose plugin are this machine's real binaries
        docker_root = root / "docker" / "debian"
        pool = docker_root / "pool" / "stable"
        pool.mkdir(parents=True)
        (docker_root / "gpg").write_bytes(signer.armored)
        docker_bin = Path(shutil.which("docker") or "/usr/bin/docker")
        compose = next(p for p in (Path("/usr/local/lib/docker/cli-plugins/docker-compose"),
                                   Path("/usr/libexec/docker/cli-plugins/docker-compose")) if p.exists())
        dv = "5:28.5.1-1~debian.12~bookworm"
        d_pkgs = [
            Pkg("containerd.io", "1.7.28-1~debian.12~bookworm"),
            Pkg("docker-ce-cli", dv, files={"/usr/bin/docker": docker_bin}, modes={"/usr/bin/docker": 0o755}),
            Pkg("docker-ce", dv, depends="containerd.io (>= 1.7.27), docker-ce-cli"),
            Pkg("docker-buildx-plugin", "0.29.1-1~debian.12~bookworm"),
            Pkg("docker-compose-plugin", "2.40.3-1~debian.12~bookworm",
                files={"/usr/libexec/docker/cli-plugins/docker-compose": compose},
                modes={"/usr/libexec/docker/cli-plugins/docker-compose": 0o755}),
        ]
        dists_repo(docker_root, [build_deb(p, pool, work) for p in d_pkgs], signer, "bookworm", "stable", "Docker CE")
        # The distribution's mirror: dkms, headers for the running kernel and the metapackage that follows kernel
        # updates (DKMS builds for both), InfiniBand tools (NVLink5 hosts)
        distro = root / "distro"
        distro.mkdir()
        flat_repo(distro, [build_deb(p, distro, work) for p in (
            Pkg("dkms", "3.0.10-8+deb12u1", "all"), Pkg(f"linux-headers-{kernel}", "1.0-1"),
            Pkg("linux-headers-amd64", "6.1.158-1", depends=f"linux-headers-{kernel}"),
            Pkg(NVLINK5[1], "44.0-2"))], signer, "Debian")
        return {"kernel": kernel, "key": signer.armored.decode()}
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    import sys

    facts = build(Path(sys.argv[1]))
    print(f"mirror in {sys.argv[1]} (headers for kernel {facts['kernel']})")
