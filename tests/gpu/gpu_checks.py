"""GPU-host checks of healthchecks.gpu: parse live nvidia-smi output, and sample GPU memory while torch
allocates. Run on a machine with an NVIDIA GPU: PYTHONPATH=. python3 tests/gpu/gpu_checks.py"""

from __future__ import annotations

import json
import subprocess
import time

from healthchecks import gpu

banner = subprocess.run(["nvidia-smi"], capture_output=True, text=True, check=True).stdout
driver, cuda = gpu.parse_banner(banner)
csv = subprocess.run(["nvidia-smi", "--query-gpu=index,name,uuid,driver_version,memory.total,memory.used,compute_cap",
                      "--format=csv"], capture_output=True, text=True, check=True).stdout
rows = gpu.parse_csv(csv)
xml = gpu.parse_xml(subprocess.run(["nvidia-smi", "-q", "-x"], capture_output=True, text=True, check=True).stdout)
assert xml["driver_version"] == driver == rows[0]["driver_version"], (xml["driver_version"], driver)
assert xml["cuda_version"] == cuda and gpu.version_tuple(cuda) >= (12, 4)
assert len(xml["gpus"]) == len(rows) and xml["gpus"][0].memory_total_mib == gpu._num(rows[0]["memory.total"])

sampler = gpu.MemorySampler.for_endpoint("127.0.0.1", 8000)
assert sampler is not None, "local nvidia-smi not usable for sampling"
base = gpu.parse_memory_used(subprocess.run(["nvidia-smi", "--query-gpu=index,memory.used",
                                             "--format=csv,noheader,nounits"], capture_output=True, text=True).stdout)
sampler.start()
import torch  # noqa: E402

x = torch.empty(4 * 2**30, dtype=torch.uint8, device="cuda")  # 4 GiB
x.fill_(1)
torch.cuda.synchronize()
time.sleep(2.0)
del x
torch.cuda.empty_cache()
time.sleep(1.0)
peak = sampler.stop()
grew = peak["0"] - base["0"]
print(json.dumps({"driver": driver, "cuda": cuda, "gpus": [r["name"] for r in rows],
                  "memory_total_mib": [g.memory_total_mib for g in xml["gpus"]], "baseline_used_mib": base,
                  "peak_used_mib": peak, "peak_growth_mib": grew}, indent=1))
assert grew >= 4000, f"sampler saw only {grew} MiB growth for a 4 GiB allocation"
print("gpu checks: OK")
