#!/usr/bin/env python3
"""A stand-in ``nvidia-smi`` for machines without a GPU: answers the query forms the kit uses with lines
recorded on a real H100 (tests/fixtures/gpu/), the compute-app PIDs replaced by the processes a test names.

    NVSMI_DOUBLE_PIDS="1234:3142,5678:812"   pid:MiB pairs listed as compute apps (empty: no process)
    NVSMI_DOUBLE_UUID / NVSMI_DOUBLE_USED     the GPU's UUID and total used MiB (default: the recorded H100)
    NVSMI_DOUBLE_LOG                          append each invocation's argv here (optional)

``install(dir)`` writes an executable ``nvidia-smi`` into ``dir`` that runs this file with this Python.
"""

from __future__ import annotations

import os
import sys
import time
from datetime import datetime
from pathlib import Path

UUID = "GPU-f0832a68-c6c0-627a-d048-1a7370169356"  # the recorded H100 (tests/fixtures/gpu/)
NAME = "NVIDIA H100 80GB HBM3"


def install(directory: Path) -> Path:
    exe = directory / "nvidia-smi"
    exe.write_text(f"#!/bin/sh\nexec {sys.executable} {Path(__file__).resolve()} \"$@\"\n")
    exe.chmod(0o755)
    return exe


def _apps() -> list[tuple[int, float]]:
    out = []
    for part in os.environ.get("NVSMI_DOUBLE_PIDS", "").split(","):
        if ":" in part:
            pid, mib = part.split(":", 1)
            out.append((int(pid), float(mib)))
    return out


def main(argv: list[str]) -> int:
    if log := os.environ.get("NVSMI_DOUBLE_LOG"):
        with open(log, "a") as fh:
            fh.write(" ".join(argv) + "\n")
    uuid = os.environ.get("NVSMI_DOUBLE_UUID", UUID)
    used = os.environ.get("NVSMI_DOUBLE_USED", "3151")
    query = next((a.split("=", 1)[1] for a in argv if a.startswith(("--query-gpu=", "--query-compute-apps="))), "")
    loop_ms = next((int(argv[i + 1]) for i, a in enumerate(argv) if a == "-lms" and i + 1 < len(argv)), 0)
    if "-L" in argv:
        print(f"GPU 0: {NAME} (UUID: {uuid})")
        return 0
    for n in range(3 if loop_ms else 1):
        ts = datetime.now().strftime("%Y/%m/%d %H:%M:%S.%f")[:-3]
        if any(a.startswith("--query-compute-apps=") for a in argv):
            for pid, mib in _apps():
                values = {"timestamp": ts, "pid": str(pid), "used_memory": f"{mib:.0f}", "gpu_uuid": uuid,
                          "process_name": "engine"}
                print(", ".join(values.get(f, "[N/A]") for f in query.split(",")))
        elif query:
            values = {"timestamp": ts, "index": "0", "uuid": uuid, "memory.used": used, "name": NAME,
                      "memory.total": "81559"}
            print(", ".join(values.get(f, "[N/A]") for f in query.split(",")))
        else:
            print("| NVIDIA-SMI 580.159.04             Driver Version: 580.159.04     CUDA Version: 13.0     |")
        sys.stdout.flush()
        if loop_ms and n < 2:
            time.sleep(loop_ms / 1000)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
