"""Serving metrics, computed exactly as ``vllm bench serve`` computes them (vllm/benchmarks/serve.py,
``calculate_metrics``). Pure functions: no I/O.

Per request (set by the streaming client):
- TTFT: time of the first streamed chunk that carries ``choices`` minus the send time (the send time is
  taken after any client-side concurrency wait, which is reported separately as ``queue_wait``).
- ITL: gaps between successive chunks that carry ``choices``.
- E2EL ("latency"): the last such chunk minus the send time.
- output tokens: ``usage.completion_tokens`` of the final usage chunk.
- TPOT: (E2EL - TTFT) / (output_tokens - 1), only when output_tokens > 1.

Aggregates: ITLs of all requests are pooled; mean/median/std are numpy's (population std); percentiles
are ``np.percentile`` (linear); throughputs divide by the benchmark's wall duration. Goodput counts
requests meeting every SLO given, using TPOT 0 for single-token answers, as vLLM does.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

METRICS = ("ttft", "tpot", "itl", "e2el")
PERCENTILES = (50.0, 90.0, 99.0)


@dataclass
class RequestResult:
    success: bool = False
    ttft: float = 0.0  # seconds
    latency: float = 0.0  # E2EL, seconds
    itl: list[float] = field(default_factory=list)
    output_tokens: int | None = None  # from usage; None when the server did not report it
    prompt_tokens: int | None = None
    chunks: int = 0  # chunks carrying choices
    queue_wait: float = 0.0  # client-side semaphore wait, not part of TTFT
    error: str = ""
    generated_text: str = ""
    engine_stats: dict[str, Any] = field(default_factory=dict)  # e.g. Ollama's eval_count, durations
    served_by: str | None = None  # who really answered (a router's provider header), when the server says
    failovers: int = 0  # moves to a next provider/upstream within this request


def _pct_name(p: float) -> str:
    return f"p{int(p) if float(p).is_integer() else p}"


def _summary(name: str, values_s: Sequence[float], percentiles: Iterable[float]) -> dict[str, float]:
    """mean/median/std/pXX in milliseconds; ``values or 0`` as vLLM does for an empty list."""
    arr: Any = list(values_s) or 0
    out = {
        f"mean_{name}_ms": float(np.mean(arr) * 1000),
        f"median_{name}_ms": float(np.median(arr) * 1000),
        f"std_{name}_ms": float(np.std(arr) * 1000),
    }
    for p in percentiles:
        out[f"{_pct_name(p)}_{name}_ms"] = float(np.percentile(arr, p) * 1000)
    return out


def parse_goodput(spec: str | None) -> dict[str, float]:
    """``ttft:500,tpot:50,e2el:3000`` -> {name: milliseconds}. Raises ValueError naming the bad part."""
    if not spec:
        return {}
    slos: dict[str, float] = {}
    for part in spec.split(","):
        name, sep, value = part.strip().partition(":")
        if not sep or name not in ("ttft", "tpot", "e2el"):
            raise ValueError(f"goodput item {part.strip()!r}: expected ttft:MS, tpot:MS or e2el:MS")
        try:
            ms = float(value)
        except ValueError:
            raise ValueError(f"goodput item {part.strip()!r}: {value!r} is not a number") from None
        if ms < 0:
            raise ValueError(f"goodput item {part.strip()!r}: must not be negative")
        slos[name] = ms
    return slos


def calculate(results: Sequence[RequestResult], duration: float, goodput: dict[str, float] | None = None,
              percentiles: Iterable[float] = PERCENTILES) -> dict[str, Any]:
    """vLLM's calculate_metrics over finished requests; ``duration`` is the wall time in seconds."""
    percentiles = tuple(percentiles)
    output_lens: list[int] = []
    total_input = 0
    completed = 0
    ttfts: list[float] = []
    tpots: list[float] = []
    all_tpots: list[float] = []
    itls: list[float] = []
    e2els: list[float] = []
    estimated = 0
    for r in results:
        if not r.success:
            output_lens.append(0)
            continue
        out_len = r.output_tokens
        if out_len is None:  # no usage from the server: one chunk is one token for these engines
            out_len = r.chunks
            estimated += 1
        output_lens.append(out_len)
        total_input += r.prompt_tokens or 0
        tpot = 0.0
        if out_len > 1:
            tpot = (r.latency - r.ttft) / (out_len - 1)
            tpots.append(tpot)
        all_tpots.append(tpot)
        itls += r.itl
        ttfts.append(r.ttft)
        e2els.append(r.latency)
        completed += 1

    good = 0
    if goodput:
        columns, slos = [], []
        for name, values in (("ttft", ttfts), ("tpot", all_tpots), ("e2el", e2els)):
            if name in goodput:
                columns.append(values)
                slos.append(goodput[name] / 1000.0)
        for req in zip(*columns, strict=True):
            if all(s >= v for s, v in zip(slos, req, strict=True)):
                good += 1

    total_output = sum(output_lens)
    dur = duration if duration > 0 else float("nan")
    out: dict[str, Any] = {
        "duration": duration,
        "completed": completed,
        "failed": len(results) - completed,
        "total_input_tokens": total_input,
        "total_output_tokens": total_output,
        "request_throughput": completed / dur,
        "request_goodput": good / dur if goodput else None,
        "output_throughput": total_output / dur,
        "total_token_throughput": (total_input + total_output) / dur,
        "output_tokens_estimated": estimated,
    }
    for name, values in (("ttft", ttfts), ("tpot", tpots), ("itl", itls), ("e2el", e2els)):
        out.update(_summary(name, values, percentiles))
    waits = [r.queue_wait for r in results]
    out.update(_summary("queue_wait", waits, percentiles))
    return out
