"""The GPU wing: what the kit knows about GPUs, in one place.

    smi.py          the one reader of nvidia-smi's CSV queries and of its memory figures
    attribution.py  the one attribution of GPU memory to processes (one instant, or peaks over samples)
    residency.py    the engine's processes on this machine (container or port owner), nvidia-smi there, and the
                    ``gpu_residency`` verdict
    memory.py       GPU memory during a benchmark (GpuMemory, the sampler smoke-bench runs)
    samples.py      a host's recorded samples (apps.csv, gpus.csv, pids.json) for ``gpu-report``
Nothing here prints.
"""
