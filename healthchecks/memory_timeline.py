"""GPU memory over a benchmark run: :class:`EngineMemorySampler`'s samples kept with their times, for the HTML
plot of GPU memory beside the server's own metrics (server_metrics.py)."""

from __future__ import annotations

import time
from typing import Any

from .gpu.memory import EngineMemorySampler


class TimedMemorySampler(EngineMemorySampler):
    """:class:`EngineMemorySampler` that also keeps each sample with its time (seconds since ``t0``), for the
    plot of GPU memory beside the server's metrics."""

    def __init__(self, host: str, port: int, t0: float, interval: float = 0.5) -> None:
        super().__init__(host, port, interval)
        self.t0 = t0
        self.samples: list[tuple[float, dict[str, float], dict[str, float]]] = []

    def _record(self, engine: dict[str, float], device: dict[str, float]) -> None:
        self.samples.append((time.perf_counter() - self.t0, dict(engine), dict(device)))
        super()._record(engine, device)

    def series(self) -> list[dict[str, Any]]:
        return [{"t": round(t, 3), "engine_mib": e, "device_mib": d} for t, e, d in self.samples if e or d]
