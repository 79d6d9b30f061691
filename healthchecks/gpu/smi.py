"""The one reader of nvidia-smi's CSV queries, as the kit runs them (``--format=csv,noheader,nounits``; a header
line, unit suffixes, ``[N/A]`` and a leading timestamp column, as the verify role's sampler writes, are
tolerated): the compute apps (which process holds how much memory on which GPU) and the GPUs (index, UUID,
memory used). :func:`mib` is the one reader of a memory figure. Pure: text in, data out."""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..numbers import ascii_uint

APPS_QUERY = ["--query-compute-apps=pid,used_memory,gpu_uuid", "--format=csv,noheader,nounits"]
GPUS_QUERY = ["--query-gpu=index,uuid,memory.used", "--format=csv,noheader,nounits"]
PID_MAX = 2**31


@dataclass(frozen=True)
class ComputeApp:
    pid: int
    used_mib: float  # 0.0 when nvidia-smi does not know ([N/A])
    gpu_uuid: str
    timestamp: str = ""  # the sampler's first column, when there is one


@dataclass(frozen=True)
class GpuUse:
    index: str
    uuid: str
    used_mib: float | None  # None when nvidia-smi does not know ([N/A])
    timestamp: str = ""


def csv_cells(line: str) -> list[str]:
    return [c.strip() for c in line.split(",")]


def mib(cell: str) -> float | None:
    """A memory figure from nvidia-smi (``500``, ``500 MiB``, ``912.5``); None for ``[N/A]``, blanks, negatives,
    inf/nan and anything not ASCII."""
    parts = cell.split()
    if not parts or not parts[0].isascii():
        return None
    try:
        v = float(parts[0])
    except ValueError:
        return None
    return v if math.isfinite(v) and v >= 0 else None


def pid(value: object) -> int | None:
    """A PID (an int, or ASCII digits): a positive whole number below 2**31; else None. ``str.isdigit`` is not
    used: it accepts "²" and other digits ``int`` refuses."""
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        value = ascii_uint(value.strip(), 10)
    if isinstance(value, int) and 0 < value < PID_MAX:
        return value
    return None


def _rows(text: str, width: int) -> list[tuple[str, list[str]]]:
    """(timestamp or "", the query's cells) of each line with the query's ``width`` cells, timestamped or not."""
    out = []
    for line in text.splitlines():
        cells = csv_cells(line)
        if len(cells) == width + 1:
            out.append((cells[0], cells[1:]))
        elif len(cells) == width:
            out.append(("", cells))
    return out


def parse_compute_apps(text: str) -> list[ComputeApp]:
    """``--query-compute-apps=pid,used_memory,gpu_uuid``: one entry per line whose PID parses."""
    apps = []
    for ts, (pid_cell, used, uuid) in _rows(text, 3):
        p = pid(pid_cell)
        if p is not None:
            apps.append(ComputeApp(p, mib(used) or 0.0, uuid, ts))
    return apps


def gpu_rows(text: str) -> list[GpuUse]:
    """``--query-gpu=index,uuid,memory.used``: one entry per line whose index parses."""
    return [GpuUse(idx, uuid, mib(used), ts) for ts, (idx, uuid, used) in _rows(text, 3)
            if ascii_uint(idx) is not None]


def parse_gpus(text: str) -> dict[str, tuple[str, float]]:
    """One sample of ``--query-gpu=index,uuid,memory.used`` -> {uuid: (index, MiB used)} (0.0 when unknown)."""
    return {g.uuid: (g.index, g.used_mib or 0.0) for g in gpu_rows(text)}
