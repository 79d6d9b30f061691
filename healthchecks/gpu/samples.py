"""Per-engine GPU memory from samples taken ON a host while its benchmark ran (read for the ``gpu-report``
console script, :mod:`healthchecks.cli.gpu_report`).

The verify role starts two nvidia-smi loops on each GPU host for the length of ``smoke-bench`` (which runs
on the controller, where the host's processes are invisible) and records the engines' host PIDs:

    apps.csv   nvidia-smi --query-compute-apps=timestamp,pid,used_memory,gpu_uuid --format=csv,noheader,nounits -lms 500
    gpus.csv   nvidia-smi --query-gpu=timestamp,index,uuid,memory.used --format=csv,noheader,nounits -lms 500
    pids.json  {"vllm": [host PIDs of the vllm container's processes], ...}

:func:`summarise` turns them into each engine's peak MiB per GPU (the sum over its processes at one sampling
instant, the highest such sum) beside each GPU's total; :func:`merge_into_bench` puts them into that host's
benchmark report (``gpu_memory`` of each endpoint entry of that engine). Nothing here prints or writes.
"""

from __future__ import annotations

import json
import stat
from pathlib import Path
from typing import Any

from ..errors import InputError
from .attribution import peaks
from .memory import GpuMemory
from .smi import gpu_rows, parse_compute_apps, pid

MAX_INPUT_BYTES = 512 * 1024 * 1024  # a day of 500 ms samples of 8 GPUs is far below this


def summarise(apps_csv: str, gpus_csv: str, pids: dict[str, list[int]]) -> dict[str, GpuMemory]:
    """Per engine: peak MiB held by its PIDs per GPU index, and the devices' peak totals. Sample lines that
    do not parse (a header, ``[N/A]``, a cut-off last line) are skipped."""
    device: dict[str, float] = {}
    uuid_index: dict[str, str] = {}
    for g in gpu_rows(gpus_csv):
        if not g.timestamp:
            continue
        uuid_index[g.uuid] = g.index
        if g.used_mib is not None:
            device[g.index] = max(device.get(g.index, 0.0), g.used_mib)
    apps = [a for a in parse_compute_apps(apps_csv) if a.timestamp]
    engine_peaks = peaks(apps, {e: set(ps) for e, ps in pids.items()}, uuid_index)
    return {e: GpuMemory(engine_peaks[e], dict(device), f"{len(pids[e])} host process(es) of {e}",
                         "" if engine_peaks[e] else f"{e}'s processes held no GPU memory during the run")
            for e in pids}


def merge_into_bench(bench: dict[str, Any], result: dict[str, GpuMemory]) -> int:
    """Write each engine's figures into the benchmark JSON's endpoint entries of that engine."""
    n = 0
    for entry in bench.get("endpoints") or []:
        mem = result.get(str(entry.get("engine")))
        if mem is not None:
            entry["gpu_memory"] = mem.to_dict()
            n += 1
    return n


def read_text(path: Path, what: str) -> str:
    """A regular file's UTF-8 text, or :class:`InputError` naming ``what`` (its role) and the problem."""
    try:
        st = path.stat()
    except FileNotFoundError:
        raise InputError(f"{what} {path} does not exist") from None
    except OSError as exc:
        raise InputError(f"{what} {path} cannot be read: {exc.strerror or exc}") from None
    if not stat.S_ISREG(st.st_mode):
        kind = "a directory" if stat.S_ISDIR(st.st_mode) else "not a regular file"
        raise InputError(f"{what} {path} is {kind}")
    if st.st_size > MAX_INPUT_BYTES:
        raise InputError(f"{what} {path} is {st.st_size} bytes, over the {MAX_INPUT_BYTES >> 20} MiB limit")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InputError(f"{what} {path} cannot be read: {exc.strerror or exc}") from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InputError(f"{what} {path} is not UTF-8 text (byte {exc.start})") from None


def read_json(path: Path, what: str) -> Any:
    text = read_text(path, what)
    if not text.strip():
        raise InputError(f"{what} {path} is empty")
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"{what} {path} is not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    except (ValueError, RecursionError) as exc:  # huge integers, nesting deeper than Python's stack
        raise InputError(f"{what} {path} is not usable JSON ({type(exc).__name__})") from None


def _json_type(v: object) -> str:
    names = {dict: "an object", list: "an array", str: "a string", bool: "a boolean", type(None): "null"}
    return names.get(type(v), "a number")


def read_pids(path: Path) -> dict[str, list[int]]:
    """pids.json: ``{"engine": [host PID, ...]}``; anything else is an :class:`InputError`."""
    raw = read_json(path, "pids.json")
    shape = 'pids.json must map each engine to a list of PIDs ({"vllm": [123, 124]})'
    if not isinstance(raw, dict):
        raise InputError(f"{path}: {shape}, not {_json_type(raw)}")
    pids: dict[str, list[int]] = {}
    for engine, v in raw.items():
        if not engine.strip() or not engine.isprintable():
            raise InputError(f"{path}: engine name {engine!r} is empty or holds control characters")
        if not isinstance(v, list):
            raise InputError(f"{path}: {engine!r} maps to {_json_type(v)}; {shape}")
        out = []
        for x in v:
            p = pid(x)
            if p is None:
                shown = json.dumps(x, ensure_ascii=False)[:40]
                raise InputError(f"{path}: {engine!r} lists {shown}, which is not a PID (a positive whole number)")
            out.append(p)
        pids[engine] = out
    return pids


def read_bench(path: Path) -> dict[str, Any]:
    """A smoke-bench JSON report: an object whose ``endpoints`` is a list of objects."""
    bench = read_json(path, "--bench-json")
    shape = "expected a smoke-bench JSON report (an object whose endpoints is a list of objects)"
    if not isinstance(bench, dict):
        raise InputError(f"--bench-json {path} holds {_json_type(bench)}: {shape}")
    eps = bench.get("endpoints")
    if eps is not None and not isinstance(eps, list):
        raise InputError(f"--bench-json {path}: endpoints is {_json_type(eps)}: {shape}")
    for i, entry in enumerate(eps or []):
        if not isinstance(entry, dict):
            raise InputError(f"--bench-json {path}: endpoints[{i}] is {_json_type(entry)}: {shape}")
    return bench
