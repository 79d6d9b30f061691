"""GPU memory during a benchmark: the engine's own processes per GPU and each GPU's total beside it, sampled in
a thread on this machine (:class:`EngineMemorySampler`), or read from a host's samples (:mod:`.samples`)."""

from __future__ import annotations

import subprocess
import threading
from dataclasses import dataclass
from typing import Any

from . import residency


@dataclass
class GpuMemory:
    """GPU memory during a benchmark: the engine's own processes per GPU, and each GPU's total beside it."""

    engine_peak_mib: dict[str, float]
    device_peak_mib: dict[str, float]
    source: str = ""  # whose processes ("container gik-vllm-1", "process 42 (llama-server)")
    note: str = ""  # why the engine's figures are missing, when they are

    def to_dict(self) -> dict[str, Any]:
        return {"engine_peak_mib": self.engine_peak_mib, "device_peak_mib": self.device_peak_mib,
                "source": self.source or None, "note": self.note or None}


class EngineMemorySampler:
    """Samples, every ``interval`` seconds, the GPU memory held by one engine's processes (per GPU) and the
    devices' totals; ``stop()`` returns the peaks as :class:`GpuMemory`, with a note where attribution was
    not possible (remote host, no nvidia-smi, no process found)."""

    def __init__(self, host: str, port: int, interval: float = 0.5) -> None:
        self._interval = interval
        self._engine: dict[str, float] = {}
        self._device: dict[str, float] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._procs: residency.EngineProcesses | None = None
        self._smi: residency.Smi | None = None
        self.source, self.note = "", ""
        found = residency.engine_processes(host, port)
        if isinstance(found, str):
            self.note = found
            return
        self._procs, self.source = found, found.source
        smi = residency.nvidia_smi_runner(found)
        if isinstance(smi, str):
            self.note = smi
        else:
            self._smi = smi

    def _loop(self) -> None:
        assert self._procs is not None and self._smi is not None
        while not self._stop.is_set():
            try:
                engine, device = residency.measure(self._procs, self._smi)
            except (OSError, subprocess.SubprocessError, ValueError):
                engine, device = {}, {}
            self._record(engine, device)
            self._stop.wait(self._interval)

    def _record(self, engine: dict[str, float], device: dict[str, float]) -> None:
        """Keep one sample: here only the peaks (per GPU index, MiB)."""
        for idx, mib in engine.items():
            self._engine[idx] = max(self._engine.get(idx, 0.0), mib)
        for idx, mib in device.items():
            self._device[idx] = max(self._device.get(idx, 0.0), mib)

    def start(self) -> None:
        if self._smi is not None:
            self._thread = threading.Thread(target=self._loop, name="gpu-engine-sampler", daemon=True)
            self._thread.start()

    def stop(self) -> GpuMemory:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=20)
        note = self.note
        if not note and not self._engine:
            note = f"{self.source} held no GPU memory during the run"
        return GpuMemory(dict(self._engine), dict(self._device), self.source, note)
