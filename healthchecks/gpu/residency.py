"""Does the engine itself hold GPU memory? The engine's processes, matched to ``nvidia-smi``'s compute apps.

The engine's processes come from its container (docker SDK: ``docker top`` lists the container's processes
with their host PIDs) or, for an engine running on the host, from the process listening on its port and
that process's descendants (vLLM's EngineCore is a child of the API server). ``nvidia-smi`` runs on the host;
where only the container has it, it runs there and its PIDs are matched through each process's ``NSpid``
(the PID namespace chain in ``/proc/<pid>/status``). Only endpoints on this machine can be attributed:
remote hosts are measured by the verify role's sampler on the host (``gpu-report``).

Pure parsing (``/proc/net/tcp``, ``NSpid``; nvidia-smi's output in :mod:`.smi`) is separate from the I/O so
tests can feed real recorded outputs; what the processes hold is :func:`.attribution.attribute`.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..dockerhost import client, container_for_port, is_local
from ..numbers import ascii_uint
from ..verdicts import FAIL, PASS, WARN, Signature
from .attribution import attribute
from .smi import APPS_QUERY, GPUS_QUERY, ComputeApp, parse_compute_apps, parse_gpus

PROC = Path("/proc")
TCP_LISTEN = "0A"


@dataclass
class EngineProcesses:
    """The engine's processes as PIDs of this machine's (the host's) namespace, and where they came from."""

    pids: set[int]
    source: str  # "container gik-vllm-1" or "process 1234 (llama-server)"
    container: Any = None  # docker container object when found through docker
    ns_pids: dict[int, int] = field(default_factory=dict)  # PID inside the container's namespace -> host PID


# -- /proc (pure) ------------------------------------------------------------------------------------------
def listening_inodes(tcp_tables: Iterable[str], port: int) -> set[str]:
    """Socket inodes listening on ``port`` from the text of ``/proc/net/tcp`` and ``/proc/net/tcp6``."""
    inodes = set()
    for table in tcp_tables:
        for line in table.splitlines()[1:]:
            parts = line.split()
            if len(parts) < 10:
                continue
            local, state, inode = parts[1], parts[3], parts[9]
            if state == TCP_LISTEN and int(local.rsplit(":", 1)[1], 16) == port and inode != "0":
                inodes.add(inode)
    return inodes


def ns_pid(status_text: str) -> int | None:
    """The PID in the innermost PID namespace from ``/proc/<pid>/status`` (``NSpid: 4711 12``)."""
    m = re.search(r"^NSpid:\s*([\d\s]+)$", status_text, re.M)
    return int(m.group(1).split()[-1]) if m else None


# -- this machine ------------------------------------------------------------------------------------------
def _read(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return ""


def port_owner(port: int, proc: Path = PROC) -> int | None:
    """The PID of the process listening on ``port`` on this machine (its own PID namespace), if visible."""
    inodes = listening_inodes((_read(proc / "net" / "tcp"), _read(proc / "net" / "tcp6")), port)
    if not inodes:
        return None
    wanted = {f"socket:[{i}]" for i in inodes}
    for pid_dir in proc.iterdir():
        if ascii_uint(pid_dir.name) is None:
            continue
        try:
            for fd in (pid_dir / "fd").iterdir():
                try:
                    if fd.readlink().as_posix() in wanted:
                        return int(pid_dir.name)
                except OSError:
                    continue
        except OSError:
            continue
    return None


def descendants(root: int, proc: Path = PROC) -> set[int]:
    """``root`` and every process below it."""
    children: dict[int, list[int]] = {}
    for pid_dir in proc.iterdir():
        if ascii_uint(pid_dir.name) is not None:
            stat = _read(pid_dir / "stat")
            # the command name is in parentheses and may contain spaces: the fields after ") " are fixed
            rest = stat.rsplit(") ", 1)[-1].split()
            if len(rest) > 1 and ascii_uint(rest[1]) is not None:
                children.setdefault(int(rest[1]), []).append(int(pid_dir.name))
    found, todo = set(), [root]
    while todo:
        pid = todo.pop()
        if pid not in found:
            found.add(pid)
            todo.extend(children.get(pid, []))
    return found


def _process_name(pid: int, proc: Path = PROC) -> str:
    return _read(proc / str(pid) / "comm").strip() or "?"


def container_processes(port: int) -> EngineProcesses | None:
    """The local container publishing ``port``: its processes' host PIDs (``docker top``)."""
    from docker.errors import DockerException

    dc = client(timeout=5)
    if dc is None:
        return None
    try:
        container = container_for_port(dc, port)
        if container is None or container.status != "running":
            return None
        top = container.top(ps_args="-eo pid")
    except DockerException:
        return None
    titles = [t.upper() for t in top.get("Titles") or []]
    col = titles.index("PID") if "PID" in titles else 0
    pids = {n for row in top.get("Processes") or [] if (n := ascii_uint(str(row[col]))) is not None}
    ns = {n: p for p in pids if (n := ns_pid(_read(PROC / str(p) / "status"))) is not None}
    return EngineProcesses(pids, f"container {container.name}", container, ns)


def engine_processes(host: str, port: int) -> EngineProcesses | str:
    """The engine's processes, or why they cannot be found from here."""
    if not is_local(host):
        return (f"{host} is another machine: its processes are not visible from here "
                "(the verify role samples GPU memory on the host: gpu-report)")
    found = container_processes(port)
    if found is not None:
        return found
    owner = port_owner(port)
    if owner is None:
        return f"no process on this machine is seen listening on port {port}"
    return EngineProcesses(descendants(owner), f"process {owner} ({_process_name(owner)})")


Runner = Callable[[list[str]], str]


@dataclass(frozen=True)
class Smi:
    """How nvidia-smi is run: on this machine, or inside the engine's container (``inside``), whose PIDs
    may then be the container namespace's."""

    run: Runner
    via: str
    inside: bool = False


def nvidia_smi_runner(procs: EngineProcesses) -> Smi | str:
    """nvidia-smi on this machine, else inside the engine's container; why not, when neither works."""
    if shutil.which("nvidia-smi"):
        def local(args: list[str]) -> str:
            return subprocess.run(["nvidia-smi", *args], capture_output=True, text=True, timeout=15).stdout
        return Smi(local, "nvidia-smi")
    if procs.container is not None:
        container = procs.container
        try:
            if container.exec_run(["nvidia-smi", "-L"]).exit_code == 0:
                def inside(args: list[str]) -> str:
                    r = container.exec_run(["nvidia-smi", *args])
                    return r.output.decode(errors="replace") if r.exit_code == 0 else ""
                return Smi(inside, f"nvidia-smi in {procs.source}", inside=True)
        except Exception:  # docker API errors of any kind: no runner
            pass
    return "no nvidia-smi on this machine or in the engine's container"


def measure(procs: EngineProcesses, smi: Smi) -> tuple[dict[str, float], dict[str, float]]:
    """(MiB held by the engine per GPU index, MiB used on each GPU in total) right now."""
    gpus = parse_gpus(smi.run(GPUS_QUERY))
    uuid_index = {u: idx for u, (idx, _) in gpus.items()}
    # inside the container, nvidia-smi may report the container namespace's PIDs; on the host, host PIDs only
    pids = procs.pids | set(procs.ns_pids) if smi.inside else procs.pids
    engine = attribute(parse_compute_apps(smi.run(APPS_QUERY)), pids, uuid_index)
    return engine, {idx: used for idx, used in gpus.values()}


def log_cause(procs: EngineProcesses, signatures: Iterable[Signature]) -> Signature | None:
    """The engine's CPU-fallback line in its log: the container's logs, or the file its stdout/stderr go to."""
    text = ""
    if procs.container is not None:
        try:
            text = procs.container.logs(tail=400).decode(errors="replace")
        except Exception:  # logs are a bonus
            text = ""
    else:
        for pid in sorted(procs.pids)[:4]:
            for fd in ("1", "2"):
                try:
                    target = (PROC / str(pid) / "fd" / fd).resolve()
                except OSError:
                    continue
                if target.is_file():
                    with target.open("rb") as fh:
                        text += fh.read(256 * 1024).decode(errors="replace") + "\n"
    sigs = tuple(signatures)
    for line in text.splitlines():
        for sig in sigs:
            if sig.pattern.search(line):
                return sig
    return None


def verdict(signatures: Iterable[Signature], host: str, port: int, *,
            expect_gpu: bool | None) -> tuple[str, str] | None:
    """The ``gpu_residency`` row for an engine without a residency API: (status, reason), or None when no
    row is due (nothing can be attributed here and nobody asked for a GPU). Blocking: run in a thread."""

    procs = engine_processes(host, port)
    if isinstance(procs, str):
        return (WARN, f"cannot verify GPU residency: {procs}") if expect_gpu else None
    smi = nvidia_smi_runner(procs)
    if isinstance(smi, str):
        return (WARN, f"cannot verify GPU residency of {procs.source}: {smi}") if expect_gpu else None
    via = smi.via
    engine_mib, _ = measure(procs, smi)
    held = sum(engine_mib.values())
    if held > 0:
        per_gpu = ", ".join(f"GPU {idx}: {mib:.0f} MiB" for idx, mib in sorted(engine_mib.items()))
        return PASS, f"{procs.source} holds {per_gpu} ({via})"
    if expect_gpu is False:
        return PASS, f"{procs.source} holds no GPU memory, as configured for a host without GPU"
    cause = log_cause(procs, signatures)
    why = f"; its log says: {cause.name}; fix: {cause.fix}" if cause else ""
    return (FAIL if expect_gpu else WARN,
            f"{procs.source} holds no GPU memory ({via}): the engine serves from the CPU{why}")


__all__ = ["APPS_QUERY", "GPUS_QUERY", "ComputeApp", "EngineProcesses", "Smi", "attribute", "descendants",
           "engine_processes", "listening_inodes", "measure", "ns_pid", "parse_compute_apps", "parse_gpus", "verdict"]
