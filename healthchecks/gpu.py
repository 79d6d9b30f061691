"""nvidia-smi: parsing (CSV queries, ``-q -x`` XML, the banner) and GPU memory sampling during a benchmark.

Parsing is pure and tested against real H100 output (shared/fixtures/gpu). Sampling runs nvidia-smi
locally, or inside the engine's container (docker SDK) when the endpoint is a local container.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import threading
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from typing import Any

from .numbers import ascii_uint

QUERY = "index,memory.used"


@dataclass(frozen=True)
class GpuInfo:
    index: int
    name: str
    uuid: str
    memory_total_mib: float
    driver_version: str = ""
    compute_cap: str = ""


def _num(text: str) -> float:
    m = re.search(r"-?\d+(?:\.\d+)?", text)
    if not m:
        raise ValueError(f"no number in {text!r}")
    return float(m.group(0))


def parse_csv(text: str) -> list[dict[str, str]]:
    """``--query-gpu=... --format=csv`` (with header, units) or ``csv,noheader,nounits`` with the header
    supplied as the first line. Keys drop units: ``memory.total [MiB]`` -> ``memory.total``."""
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    if not lines:
        return []
    header = [re.sub(r"\s*\[.*?\]", "", h).strip() for h in lines[0].split(",")]
    rows = []
    for ln in lines[1:]:
        cells = [c.strip() for c in ln.split(",")]
        if len(cells) != len(header):
            raise ValueError(f"nvidia-smi CSV row has {len(cells)} fields, header has {len(header)}: {ln[:80]!r}")
        rows.append(dict(zip(header, cells, strict=True)))
    return rows


def parse_memory_used(text: str) -> dict[str, float]:
    """``--query-gpu=index,memory.used --format=csv,noheader,nounits`` -> {index: MiB}."""
    out = {}
    for ln in text.strip().splitlines():
        parts = [p.strip() for p in ln.split(",")]
        if len(parts) >= 2 and ascii_uint(parts[0]) is not None:
            out[parts[0]] = _num(parts[1])
    return out


def parse_xml(text: str) -> dict[str, Any]:
    """``nvidia-smi -q -x``: driver and CUDA versions and every GPU."""
    try:
        root = ET.fromstring(text)
    except ET.ParseError as exc:
        raise ValueError(f"nvidia-smi XML does not parse: {exc}") from None
    gpus = []
    for i, g in enumerate(root.findall("gpu")):
        total = g.findtext("fb_memory_usage/total") or "0"
        minor = (g.findtext("minor_number") or "").strip()
        gpus.append(GpuInfo(
            index=i if (n := ascii_uint(minor)) is None else n,
            name=(g.findtext("product_name") or "").strip(),
            uuid=(g.findtext("uuid") or "").strip(),
            memory_total_mib=_num(total),
            driver_version=(root.findtext("driver_version") or "").strip(),
        ))
    return {
        "driver_version": (root.findtext("driver_version") or "").strip(),
        "cuda_version": (root.findtext("cuda_version") or "").strip(),
        "gpus": gpus,
    }


_BANNER = re.compile(r"Driver Version:\s*([\d.]+)\s+CUDA Version:\s*([\d.]+)")


def parse_banner(text: str) -> tuple[str, str]:
    """(driver version, highest CUDA version the driver supports) from plain ``nvidia-smi``."""
    m = _BANNER.search(text)
    if not m:
        raise ValueError("no 'Driver Version: ... CUDA Version: ...' line in nvidia-smi output")
    return m.group(1), m.group(2)


def version_tuple(v: str) -> tuple[int, ...]:
    return tuple(int(x) for x in re.findall(r"\d+", v))


class MemorySampler:
    """Samples per-GPU used memory in a thread; ``stop()`` returns the peak MiB per GPU index."""

    def __init__(self, argv_runner: Any, interval: float = 0.5) -> None:
        self._run = argv_runner
        self._interval = interval
        self._peak: dict[str, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="gpu-sampler", daemon=True)

    @classmethod
    def for_endpoint(cls, host: str, port: int) -> MemorySampler | None:
        """Local nvidia-smi, else nvidia-smi inside the local container publishing ``port``, else None."""
        from .dockerhost import client, container_for_port, is_local

        if not is_local(host):
            return None
        argv = ["nvidia-smi", f"--query-gpu={QUERY}", "--format=csv,noheader,nounits"]
        if shutil.which("nvidia-smi"):
            def local() -> str:
                return subprocess.run(argv, capture_output=True, text=True, timeout=10).stdout
            return cls(local) if parse_memory_used(local()) else None
        try:
            dc = client(timeout=5)
            container = container_for_port(dc, port) if dc is not None else None
            if container is None:
                return None
            probe = container.exec_run(argv)
            if probe.exit_code != 0:
                return None

            def in_container() -> str:
                r = container.exec_run(argv)
                return r.output.decode(errors="replace") if r.exit_code == 0 else ""
            return cls(in_container)
        except Exception:  # docker unreachable or container gone: no sampling, never a failure
            return None

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                for idx, mib in parse_memory_used(self._run()).items():
                    self._peak[idx] = max(self._peak.get(idx, 0.0), mib)
            except (OSError, subprocess.SubprocessError, ValueError):
                pass
            self._stop.wait(self._interval)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> dict[str, float]:
        self._stop.set()
        self._thread.join(timeout=15)
        return dict(self._peak)


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
        from . import residency

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
        from . import residency

        assert self._procs is not None and self._smi is not None
        while not self._stop.is_set():
            try:
                engine, device = residency.measure(self._procs, self._smi)
            except (OSError, subprocess.SubprocessError, ValueError):
                engine, device = {}, {}
            for idx, mib in engine.items():
                self._engine[idx] = max(self._engine.get(idx, 0.0), mib)
            for idx, mib in device.items():
                self._device[idx] = max(self._device.get(idx, 0.0), mib)
            self._stop.wait(self._interval)

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
