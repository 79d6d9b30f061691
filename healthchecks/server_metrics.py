"""The server during a benchmark run (issue 22 item 6): what the engine itself says about its load, scraped at
``--scrape-interval`` beside the client's figures, and the GPU memory samples over time.

Each engine module names what to read in a table of :class:`ServerMetric` (``Engine.metric_table()``): gauges
(requests running and waiting, KV-cache usage) and cache hit rates from two counters (hits over queries over the
run, and over each scrape interval for the plot). Engines with a Prometheus endpoint read it from their
``/metrics`` text (the exposition format: ``name{labels} value [timestamp]``, label sets summed; read by hand
for the few names asked, so no client library is needed); an engine without one overrides
``Engine.sample_server`` (Ollama: ``/api/ps``). The same scraper serves any engine or gateway whose module adds a
table. Per metric the report gives the peak and the mean over the run's samples (a hit rate: the run's own
rate), and every sample with its time, for the HTML plot.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .memory_timeline import TimedMemorySampler


@dataclass(frozen=True)
class ServerMetric:
    """One figure the server reports. A gauge: the first of ``series`` the server exposes, times ``scale``.
    A hit rate (``hits`` given): 100 x the growth of the ``hits`` counters over the growth of the ``queries``
    counters (each list summed), over the whole run and over each interval between two scrapes."""

    key: str  # the kit's name, the same for every engine: running, waiting, kv_cache, prefix_cache_hits...
    title: str
    series: tuple[str, ...] = ()
    scale: float = 1.0
    unit: str = ""
    hits: tuple[str, ...] = ()
    queries: tuple[str, ...] = ()

    @property
    def is_rate(self) -> bool:
        return bool(self.hits)

    @property
    def names(self) -> tuple[str, ...]:
        return (*self.series, *self.hits, *self.queries)


def wanted(table: tuple[ServerMetric, ...]) -> frozenset[str]:
    return frozenset(n for m in table for n in m.names)


def parse(text: str, names: frozenset[str]) -> dict[str, float]:
    """The samples of ``names`` in a Prometheus text exposition, each name's label sets summed (vLLM labels each
    series by engine and model: several engines or models add up). NaN samples and malformed lines are
    skipped."""
    out: dict[str, float] = {}
    for line in text.splitlines():
        if not line or line[0] == "#":
            continue
        brace, space = line.find("{"), line.find(" ")
        cut = brace if 0 <= brace < space or (brace >= 0 and space < 0) else space
        if cut <= 0:
            continue
        name = line[:cut]
        if name not in names:
            continue
        rest = line[line.rfind("}") + 1:] if cut == brace else line[cut:]
        fields = rest.split()
        if not fields:
            continue
        try:
            value = float(fields[0])
        except ValueError:
            continue
        if not math.isnan(value):
            out[name] = out.get(name, 0.0) + value
    return out


def _total(raw: dict[str, float], names: tuple[str, ...]) -> float | None:
    present = [raw[n] for n in names if n in raw]
    return sum(present) if present else None


class ServerSeries:
    """The samples of one endpoint's run: ``add`` each scrape (seconds since the run started, the raw values),
    ``to_dict`` the summary and the series."""

    def __init__(self, table: tuple[ServerMetric, ...], source: str, path: str = "/metrics") -> None:
        self.table, self.source, self.path = table, source, path
        self.samples: list[dict[str, float | None]] = []
        self._first: dict[str, tuple[float, float]] = {}
        self._last: dict[str, tuple[float, float]] = {}
        self.note = ""

    def add(self, t: float, raw: dict[str, float]) -> None:
        sample: dict[str, float | None] = {"t": round(t, 3)}
        for m in self.table:
            if m.is_rate:
                h, q = _total(raw, m.hits), _total(raw, m.queries)
                if h is None or q is None:
                    continue
                prev = self._last.get(m.key)
                if prev is not None:
                    dq = q - prev[1]
                    sample[m.key] = 100 * (h - prev[0]) / dq if dq > 0 else None
                self._first.setdefault(m.key, (h, q))
                self._last[m.key] = (h, q)
            else:
                v = next((raw[n] for n in m.series if n in raw), None)
                if v is not None:
                    sample[m.key] = v * m.scale
        self.samples.append(sample)

    def values(self, key: str) -> list[float]:
        return [v for s in self.samples if isinstance(v := s.get(key), float | int)]

    def peak(self, key: str) -> float | None:
        vals = self.values(key)
        return max(vals) if vals else None

    def summary(self) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        for m in self.table:
            vals = self.values(m.key)
            entry: dict[str, Any] = {"title": m.title, "unit": m.unit, "samples": len(vals),
                                     "peak": max(vals) if vals else None,
                                     "mean": sum(vals) / len(vals) if vals else None}
            if m.is_rate:
                first, last = self._first.get(m.key), self._last.get(m.key)
                dq = last[1] - first[1] if first and last else 0.0
                entry["run"] = 100 * (last[0] - first[0]) / dq if first and last and dq > 0 else None
                entry["hits"] = last[0] - first[0] if first and last else None
                entry["queries"] = dq if first and last else None
            elif not vals and not any(m.key in s for s in self.samples):
                entry["note"] = f"not exposed ({', '.join(m.series)})"
            out[m.key] = entry
        return out

    def to_dict(self, interval: float, gpu: TimedMemorySampler | None = None) -> dict[str, Any]:
        return {"source": self.source, "path": self.path, "note": self.note or None, "interval_s": interval,
                "metrics": self.summary(), "samples": self.samples,
                "gpu_samples": gpu.series() if gpu is not None else []}


def headline(m: dict[str, Any]) -> float | None:
    """The one figure of a metric's summary for a table cell: a hit rate's run rate, else the peak."""
    return m.get("run") if "run" in m else m.get("peak")


def cell(m: dict[str, Any] | None) -> str:
    """ "peak / mean" of a gauge, the run's rate of a hit rate; "-" where the server gave nothing."""
    if not m:
        return "-"
    if "run" in m:
        return "-" if m["run"] is None else f"{m['run']:.1f}"
    if m.get("peak") is None:
        return "-"
    fmt = "{:.0f}" if m["peak"] >= 100 else "{:.1f}" if m["peak"] >= 10 else "{:.2f}"
    return f"{fmt.format(m['peak'])} / {fmt.format(m['mean'])}"


def row_title(m: dict[str, Any]) -> str:
    unit = f" ({m['unit']})" if m.get("unit") else ""
    return f"server {m['title']}{unit}, " + ("over the run" if "run" in m else "peak / mean")
