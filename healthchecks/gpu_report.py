"""``gpu-report``: per-engine GPU memory from samples taken ON a host while its benchmark ran.

The verify role starts two nvidia-smi loops on each GPU host for the length of ``smoke-bench`` (which runs
on the controller, where the host's processes are invisible) and records the engines' host PIDs:

    apps.csv   nvidia-smi --query-compute-apps=timestamp,pid,used_memory,gpu_uuid --format=csv,noheader,nounits -lms 500
    gpus.csv   nvidia-smi --query-gpu=timestamp,index,uuid,memory.used --format=csv,noheader,nounits -lms 500
    pids.json  {"vllm": [host PIDs of the vllm container's processes], ...}

This command turns them into each engine's peak MiB per GPU (the sum over its processes at one sampling
instant, the highest such sum) beside each GPU's total, prints them, and with ``--bench-json`` writes them
into that host's benchmark report (``gpu_memory`` of each endpoint entry of that engine).

Exit codes: 0 done, 1 ``--expect-gpu`` and an engine held no GPU memory, 2 usage or unreadable input.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

from . import __version__
from .gpu import GpuMemory
from .residency import csv_cells


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        print(f"{self.prog}: error: {message} (see --help)", file=sys.stderr)
        sys.exit(2)


def _timestamped(text: str, width: int) -> list[list[str]]:
    return [c for line in text.splitlines() if len(c := csv_cells(line)) == width and c[1]]


def summarise(apps_csv: str, gpus_csv: str, pids: dict[str, list[int]]) -> dict[str, GpuMemory]:
    """Per engine: peak MiB held by its PIDs per GPU index, and the devices' peak totals."""
    device: dict[str, float] = {}
    uuid_index: dict[str, str] = {}
    for _ts, idx, uuid, used in _timestamped(gpus_csv, 4):
        uuid_index[uuid] = idx
        try:
            device[idx] = max(device.get(idx, 0.0), float(used.split()[0]))
        except ValueError:
            continue
    owner = {pid: engine for engine, ps in pids.items() for pid in ps}
    at: dict[tuple[str, str, str], float] = defaultdict(float)  # (timestamp, engine, gpu) -> MiB
    for ts, pid, used, uuid in _timestamped(apps_csv, 4):
        engine = owner.get(int(pid)) if pid.isdigit() else None
        if engine is None:
            continue
        try:
            at[(ts, engine, uuid_index.get(uuid, uuid))] += float(used.split()[0])
        except ValueError:
            continue
    peaks: dict[str, dict[str, float]] = {e: {} for e in pids}
    for (_ts, engine, idx), mib in at.items():
        peaks[engine][idx] = max(peaks[engine].get(idx, 0.0), mib)
    return {e: GpuMemory(peaks[e], dict(device), f"{len(pids[e])} host process(es) of {e}",
                         "" if peaks[e] else f"{e}'s processes held no GPU memory during the run")
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


def main(argv: Sequence[str] | None = None) -> int:
    p = _Parser(prog="gpu-report", description="Per-engine GPU memory from samples recorded on a host "
                "(apps.csv, gpus.csv, pids.json). Exit 0 done, 1 an engine held no GPU memory with "
                "--expect-gpu, 2 usage or unreadable input.")
    p.add_argument("samples", metavar="DIR", help="folder with apps.csv, gpus.csv and pids.json")
    p.add_argument("--bench-json", metavar="FILE", help="smoke-bench JSON to add the figures to (in place)")
    p.add_argument("--expect-gpu", action="store_true", help="exit 1 when an engine held no GPU memory")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    a = p.parse_args(argv)
    d = Path(a.samples)
    try:
        apps, gpus = (d / "apps.csv").read_text(errors="replace"), (d / "gpus.csv").read_text(errors="replace")
        raw = json.loads((d / "pids.json").read_text())
        bench = json.loads(Path(a.bench_json).read_text()) if a.bench_json else None
    except (OSError, ValueError) as exc:
        print(f"gpu-report: cannot read the samples: {exc}", file=sys.stderr)
        return 2
    if not isinstance(raw, dict) or not all(isinstance(v, list) for v in raw.values()):
        print('gpu-report: pids.json must map each engine to a list of PIDs ({"vllm": [123, 124]})', file=sys.stderr)
        return 2
    pids = {str(e): [int(x) for x in v if str(x).isdigit()] for e, v in raw.items()}
    result = summarise(apps, gpus, pids)
    if bench is not None:
        merge_into_bench(bench, result)
        Path(a.bench_json).write_text(json.dumps(bench, indent=2) + "\n")
    if a.json:
        print(json.dumps({e: m.to_dict() for e, m in result.items()}, indent=2))
    else:
        for e, m in sorted(result.items()):
            figures = ", ".join(f"GPU {i}: {v:.0f} MiB (device total peak {m.device_peak_mib.get(i, 0):.0f} MiB)"
                                for i, v in sorted(m.engine_peak_mib.items()))
            print(f"{e}: {figures or m.note}")
    empty = sorted(e for e, m in result.items() if not m.engine_peak_mib)
    if a.expect_gpu and empty:
        print(f"gpu-report: no GPU memory held by {', '.join(empty)}: the engine serves from the CPU",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
