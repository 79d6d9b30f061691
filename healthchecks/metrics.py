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
``max_output_tokens_per_s`` and ``max_concurrent_requests``: token times and active requests bucketed per
whole second since the first successful request's start, the highest bucket (vLLM's definitions).

Completed/failed: a request succeeds as vLLM's request functions decide (at least one chunk with ``choices``
and no transport error); the kit's stricter findings on such a success are ``RequestResult.warning``.
"""

from __future__ import annotations

import math
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
    start_time: float = 0.0  # perf_counter when the request was sent (after any concurrency wait)
    warning: str = ""  # a success by vLLM's rules that the kit's stricter rules flag (no [DONE], error event)
    request_id: str | None = None  # the server's x-request-id for the answer (or failure) this result records
    failed_attempts: list[str] = field(default_factory=list)  # earlier attempts of this request that failed


MAX_TOKENS_PER_REQUEST = 2**31  # a count beyond this is no engine's answer (e.g. 10**30): treated as missing


def token_count(value: Any) -> int | None:
    """A server-reported token count as an int, or None when it is not one: a JSON string ("3"), a bool, a
    fraction (2.5), a negative, an inf/NaN or an absurd number all count as *missing* (the caller then
    counts chunks, as for a server that reports nothing, and says so in a warning); an integral float (3.0)
    is accepted."""
    if isinstance(value, bool):
        return None
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        value = int(value)
    if isinstance(value, int) and 0 <= value <= MAX_TOKENS_PER_REQUEST:
        return value
    return None


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


def parse_goodput(spec: str | Sequence[str] | None) -> dict[str, float]:
    """``ttft:500 tpot:50`` (vLLM's space-separated ``--goodput`` items) or ``ttft:500,tpot:50,e2el:3000``
    -> {name: milliseconds}. Raises ValueError naming the bad part."""
    if not spec:
        return {}
    items = [spec] if isinstance(spec, str) else list(spec)
    parts = [p.strip() for item in items for p in item.split(",") if p.strip()]
    slos: dict[str, float] = {}
    for part in parts:
        name, sep, value = part.partition(":")
        if not sep or name not in ("ttft", "tpot", "e2el"):
            raise ValueError(f"goodput item {part!r}: expected ttft:MS, tpot:MS or e2el:MS")
        try:
            ms = float(value)
        except ValueError:
            raise ValueError(f"goodput item {part!r}: {value!r} is not a number") from None
        if not math.isfinite(ms) or ms < 0:
            raise ValueError(f"goodput item {part!r}: must be a finite number >= 0")
        slos[name] = ms
    return slos


def peak_per_second(results: Sequence[RequestResult]) -> tuple[float, int]:
    """vLLM's ``max_output_tokens_per_s`` and ``max_concurrent_requests`` (serve.py, calculate_metrics): token
    times (start + ttft + cumulative itl) and active requests bucketed per whole second since the first
    successful request's start; the highest bucket of each."""
    ok = [r for r in results if r.success]
    if not ok:
        return 0.0, 0
    t0 = min(r.start_time for r in ok)
    end = max(r.start_time + r.latency for r in ok)
    n = int(np.ceil(end - t0)) + 1
    tokens = np.zeros(n)
    active = np.zeros(n)
    for r in ok:
        t = r.start_time + r.ttft
        times = [t]
        for gap in r.itl:
            t += gap
            times.append(t)
        for when in times:
            b = int(when - t0)
            if 0 <= b < n:
                tokens[b] += 1
        for second in range(int(r.start_time - t0), int(r.start_time + r.latency - t0) + 1):
            active[second] += 1
    return float(np.max(tokens)), int(np.max(active))


def calculate(results: Sequence[RequestResult], duration: float, goodput: dict[str, float] | None = None,
              percentiles: Iterable[float] = PERCENTILES,
              percentile_metrics: Iterable[str] = METRICS) -> dict[str, Any]:
    """vLLM's calculate_metrics over finished requests; ``duration`` is the wall time in seconds. Statistics
    (mean/median/std/pXX) are given for ``percentile_metrics`` only, as vLLM's ``--percentile-metrics``."""
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
        out_len = token_count(r.output_tokens)  # clients already validate; a stray type never fails the run
        if not out_len:  # no usage from the server: one chunk is one token for these engines
            out_len = r.chunks
            estimated += 1
        output_lens.append(out_len)
        total_input += token_count(r.prompt_tokens) or 0
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
    peak_tokens, peak_active = peak_per_second(results)
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
        "max_output_tokens_per_s": peak_tokens,
        "max_concurrent_requests": peak_active,
        "output_tokens_estimated": estimated,
        "good_completed": good if goodput else None,
    }
    wanted = set(percentile_metrics)
    for name, values in (("ttft", ttfts), ("tpot", tpots), ("itl", itls), ("e2el", e2els)):
        if name in wanted:
            out.update(_summary(name, values, percentiles))
    waits = [r.queue_wait for r in results]
    out.update(_summary("queue_wait", waits, percentiles))
    return out
