"""``smoke-bench --sweep``: the saturation point of every engine, under the same workload.

Per endpoint (after vLLM's initial test request and the warm-ups), in the manner of GuideLLM's sweep:

1. ``synchronous``: one request at a time (the best latency the engine gives);
2. ``throughput``: everything at once (``--max-concurrency`` still bounds it): the most it can do;
3. a ladder of ``--sweep-points`` loads between the two: request rates evenly spaced between the two runs'
   request throughputs (``--sweep-mode rate``, Poisson arrivals as ``--burstiness`` says), or concurrencies
   spaced geometrically between 1 and the throughput run's (``--sweep-mode concurrency``).

The ladder runs upwards and stops early once the engine is saturated: throughput rose less than 5% over the
previous load while the median TTFT grew by half or more (requests queue instead of being served).

A load *meets the targets* when at least ``--slo-attainment`` (default 90%) of its requests completed within
every ``--goodput`` SLO (default ttft:2000 tpot:100 ms). The answer per engine is the highest achieved request
rate among the sustained loads (one user, the ladder; not the all-at-once burst, whose verdict depends on N)
that meet them, with its throughput, latency percentiles and users: requests in flight on average (Little's
law: request throughput x mean E2EL), i.e. how many users, each waiting for their answer before asking again,
this engine serves on this box within the targets.

``--max-seconds`` bounds the whole sweep: the remaining time is shared among the endpoints still to run and
each one's among its remaining loads; a load that reaches its share stops sending and cancels what is in flight
(counted as ``cut_short``, not as failures).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

from rich.console import Console
from rich.progress import Progress, TaskID

from . import bench, metrics
from .bench import BenchConfig, EndpointResult, Point, Target
from .endpoints.url import Endpoint
from .workload import LocalTokenizer

GROWTH = 1.05  # throughput must rise by 5% from one load to the next ...
QUEUEING = 1.5  # ... or, with the median TTFT up by half, the engine is saturated


@dataclass(frozen=True)
class SweepOptions:
    mode: str = "rate"
    points: int = 5
    attainment: float = 0.9
    max_seconds: float | None = None


class Budget:
    """The --max-seconds clock, shared fairly: endpoints left, then loads left within one endpoint."""

    def __init__(self, seconds: float | None, endpoints: int) -> None:
        self.end = time.perf_counter() + seconds if seconds else None
        self.endpoints_left = max(endpoints, 1)

    def endpoint_end(self) -> float | None:
        if self.end is None:
            return None
        now = time.perf_counter()
        share = max(self.end - now, 0.0) / self.endpoints_left
        self.endpoints_left = max(self.endpoints_left - 1, 1)
        return now + share

    @staticmethod
    def point_end(endpoint_end: float | None, loads_left: int) -> float | None:
        if endpoint_end is None:
            return None
        now = time.perf_counter()
        return now + max(endpoint_end - now, 0.0) / max(loads_left, 1)


def ladder(mode: str, k: int, low: float, high: float) -> list[float]:
    """k loads strictly between the synchronous and the throughput run: even rates, geometric users."""
    if k <= 0:
        return []
    if mode == "rate":
        if not (high > low > 0):
            high = max(high, low) * 1.5 if low > 0 else 1.0
            low = low if low > 0 else high / (k + 1)
        step = (high - low) / (k + 1)
        return [low + step * (i + 1) for i in range(k)]
    top = max(int(high), 2)
    values = sorted({max(2, round(math.exp(math.log(top) * (i + 1) / (k + 1)))) for i in range(k)})
    return [float(v) for v in values if 1 < v < top] or ([float(top - 1)] if top > 2 else [])


def summarise(kind: str, offered: str, point: Point, cfg: BenchConfig, attainment: float,
              rate: float | None, concurrency: int | None) -> dict[str, Any]:
    """One load's figures: vLLM's metrics over the requests that ran, SLO attainment and users."""
    m = metrics.calculate(point.requests, point.duration, cfg.goodput, cfg.metric_percentiles, metrics.METRICS)
    sent = len(point.requests)
    good = m.get("good_completed") or 0
    share = good / sent if sent else 0.0
    users = m["request_throughput"] * m["mean_e2el_ms"] / 1000 if m["completed"] else 0.0
    keep = {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in m.items()
            if isinstance(v, int | float) or v is None}
    return {"kind": kind, "offered": offered, "rate": rate, "concurrency": concurrency, **keep,
            "sent": sent, "cut_short": point.cut_short, "attainment": share,
            "meets": bool(sent) and share >= attainment, "users": users}


def saturated(prev: dict[str, Any], cur: dict[str, Any]) -> bool:
    grew = cur["request_throughput"] >= prev["request_throughput"] * GROWTH
    queued = cur.get("median_ttft_ms", 0.0) >= QUEUEING * max(prev.get("median_ttft_ms", 0.0), 1e-9)
    return not grew and queued


async def sweep_endpoint(t: Target, cfg: BenchConfig, local: LocalTokenizer | None, progress: Progress,
                         opts: SweepOptions, budget: Budget) -> EndpointResult:
    end = budget.endpoint_end()
    await bench.prepare(t, cfg, local)
    result = EndpointResult(t.ep.label, t.engine.name, t.ep.url, t.model, t.api, cfg.num_prompts,
                            meta=dict(t.ep.meta), tokens_from=t.tokens_from, workload=t.workload)
    params = bench.request_params(cfg)
    first = await bench.warm_up(t, cfg, params)
    if first is not None:
        failed = bench.failed_result(t.ep, cfg, f"initial test request failed: {first.error}", t, first)
        failed.tokens_from, failed.workload, failed.sweep = t.tokens_from, t.workload, {"points": [], "best": None}
        return failed
    overall = progress.add_task(f"{t.ep.label}: sweep", total=opts.points + 2)
    samplers = bench.Samplers(t, cfg)
    samplers.start()
    runs: list[tuple[dict[str, Any], Point]] = []
    loads_left = opts.points + 2

    async def run(kind: str, offered: str, rate: float, conc: int | None) -> dict[str, Any]:
        nonlocal loads_left
        task: TaskID = progress.add_task(f"{t.ep.label} · {kind} {offered}", total=len(t.workload))
        point = await bench.timed_run(lambda r: t.send(r, params), t.workload, rate=rate, burstiness=cfg.burstiness,
                                      seed=cfg.seed, max_concurrency=conc, deadline=Budget.point_end(end, loads_left),
                                      on_done=lambda: progress.advance(task),
                                      max_failures=cfg.max_failures(len(t.workload)))
        if point.budget_spent and not result.stopped_early:
            result.stopped_early = f"{offered}: {bench.budget_line(point, cfg)}; the sweep stopped climbing"
        loads_left -= 1
        progress.update(task, visible=False)
        progress.advance(overall)
        s = summarise(kind, offered, point, cfg, opts.attainment, None if math.isinf(rate) else rate, conc)
        runs.append((s, point))
        return s

    sync = await run("synchronous", "1 user", math.inf, 1)
    top_conc = cfg.max_concurrency or len(t.workload)
    thr = await run("throughput", "all at once" if not cfg.max_concurrency else f"{top_conc} users",
                    math.inf, cfg.max_concurrency)
    saturated_at = None
    prev = sync
    if opts.mode == "rate":
        loads = ladder("rate", opts.points, sync["request_throughput"], thr["request_throughput"])
    else:
        loads = ladder("concurrency", opts.points, 1, top_conc)
    for load in loads:
        if (end is not None and time.perf_counter() >= end) or bench.stopping() or result.stopped_early:
            break
        if opts.mode == "rate":
            cur = await run("rate", f"{load:.2f} req/s", load, cfg.max_concurrency)
        else:
            cur = await run("concurrency", f"{int(load)} users", math.inf, int(load))
        if saturated(prev, cur):
            saturated_at = cur["offered"]
            break
        prev = cur
    progress.update(overall, completed=opts.points + 2)
    await samplers.finish(result)
    rank = {"synchronous": 0, "rate": 1, "concurrency": 1, "throughput": 2}
    points = sorted((s for s, _ in runs), key=lambda s: (rank[s["kind"]], s["rate"] or 0.0, s["concurrency"] or 0))
    # the answer is a sustained load (one user, or a ladder rung); the all-at-once burst only says "even more"
    passing = [s for s, _ in runs if s["meets"] and s["kind"] != "throughput"]
    best = max(passing, key=lambda s: s["request_throughput"]) if passing else None
    head = next((p for s, p in runs if s is best), None) or runs[0][1]
    bench.fill(result, head, cfg, t)
    top_rung = [s for s, _ in runs if s["kind"] != "throughput"][-1]  # the highest load offered (runs go up)
    result.sweep = {"mode": opts.mode, "slo": cfg.goodput, "attainment_required": opts.attainment,
                    "points": points, "best": best, "saturated_at": saturated_at,
                    "highest_load_met": best is not None and best is top_rung, "burst_met": thr["meets"],
                    "headline": best["offered"] if best else sync["offered"]}
    return result


async def run_sweeps(eps: list[Endpoint], cfg: BenchConfig, opts: SweepOptions,
                     console: Console | None = None) -> list[EndpointResult]:
    budget = Budget(opts.max_seconds, len(eps))

    async def runner(t: Target, c: BenchConfig, local: LocalTokenizer | None, progress: Progress) -> EndpointResult:
        return await sweep_endpoint(t, c, local, progress, opts, budget)

    return await bench.run_all(eps, cfg, console, runner=runner)
