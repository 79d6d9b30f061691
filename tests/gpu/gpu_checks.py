"""GPU-host checks of the GPU wing (healthchecks.gpu): the one nvidia-smi reader on live output of the queries the
kit runs, and the one attribution of GPU memory to processes while this process holds 4 GiB on GPU 0 (through
the CUDA driver API, libcuda.so.1, so that no torch is needed). Run on a machine with an NVIDIA GPU:
PYTHONPATH=. python3 tests/gpu/gpu_checks.py"""

from __future__ import annotations

import ctypes
import json
import os
import subprocess
import time

from healthchecks.gpu.attribution import attribute
from healthchecks.gpu.smi import APPS_QUERY, GPUS_QUERY, gpu_rows, parse_compute_apps, parse_gpus


def smi(args: list[str]) -> str:
    return subprocess.run(["nvidia-smi", *args], capture_output=True, text=True, check=True, timeout=30).stdout


gpus = gpu_rows(smi(GPUS_QUERY))
assert gpus and all(g.uuid.startswith("GPU-") and g.used_mib is not None for g in gpus), gpus
index = {u: i for u, (i, _) in parse_gpus(smi(GPUS_QUERY)).items()}
before = parse_gpus(smi(GPUS_QUERY))[gpus[0].uuid][1]

cuda = ctypes.CDLL("libcuda.so.1")
dev, ctx, ptr = ctypes.c_int(), ctypes.c_void_p(), ctypes.c_uint64()
for call, args in (("cuInit", (0,)), ("cuDeviceGet", (ctypes.byref(dev), 0)),
                   ("cuCtxCreate_v2", (ctypes.byref(ctx), 0, dev)),
                   ("cuMemAlloc_v2", (ctypes.byref(ptr), ctypes.c_size_t(4 << 30)))):
    rc = getattr(cuda, call)(*args)
    assert rc == 0, f"{call} failed: CUDA error {rc}"
time.sleep(2.0)
apps = parse_compute_apps(smi(APPS_QUERY))
held = attribute(apps, {os.getpid()}, index)
during = parse_gpus(smi(GPUS_QUERY))[gpus[0].uuid][1]
others = attribute(apps, {a.pid for a in apps} - {os.getpid()}, index)
cuda.cuMemFree_v2(ptr)
cuda.cuCtxDestroy_v2(ctx)
print(json.dumps({"gpus": [(g.index, g.uuid, g.used_mib) for g in gpus], "this_process_mib": held,
                  "other_processes_mib": others, "device_used_before_mib": before, "device_used_during_mib": during,
                  "compute_apps": [(a.pid, a.used_mib, a.gpu_uuid) for a in apps]}, indent=1))
# nvidia-smi in a PID namespace other than this process's lists no PID it can match: say so rather than pass
pid_visible = any(a.pid == os.getpid() for a in apps)
assert pid_visible, "nvidia-smi lists no compute app with this process's PID (another PID namespace?)"
assert held.get(gpus[0].index, 0) >= 4096, f"attributed {held} to this process for a 4 GiB allocation"
assert during - before >= 4096 * 0.95, (before, during)
print("gpu checks: OK")
