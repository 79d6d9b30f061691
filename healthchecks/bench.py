"""The smoke benchmark: workload, arrivals and concurrency. Statistics live in metrics.py, output in report.py.

Arrivals follow ``vllm bench serve``: with rate R and burstiness B the gap between requests is
``gamma(shape=B, scale=1/(R*B))`` (B=1 is Poisson); R=inf sends everything at once. ``--concurrency``
bounds requests in flight; the wait for a slot is measured separately and is not part of TTFT.
Endpoints are benchmarked one after another so that engines sharing a host do not disturb each other.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from . import engines, gpu, metrics
from .endpoints import Endpoint
from .engines import Engine, RequestParams
from .errors import ConfigError, ProtocolError
from .metrics import RequestResult
from .protocols import Http, read_api_key

VOCAB = (
    "time person year way day thing man world life hand part child eye woman place work week case point "
    "government company number group problem fact water light river mountain engine model server token "
    "memory answer question system network cluster graph kernel driver"
).split()


@dataclass(frozen=True)
class BenchConfig:
    num_prompts: int
    concurrency: int | None = None
    request_rate: float = float("inf")
    burstiness: float = 1.0
    warmups: int = 1
    seed: int = 0
    api: str | None = None
    dataset: str | None = None
    input_len: int = 64
    output_len: int = 64
    range_ratio: float = 0.0
    ignore_eos: bool = False
    goodput: dict[str, float] = field(default_factory=dict)
    timeout: float = 30.0  # connect/read timeout between chunks
    request_timeout: float = 300.0  # whole request
    gpu_sampling: bool = True


def config_from_args(a: argparse.Namespace) -> BenchConfig:
    if not 0 <= a.range_ratio < 1:
        raise ConfigError(f"--range-ratio must be in [0, 1), not {a.range_ratio}")
    if a.warmups < 0:
        raise ConfigError(f"--warmups must not be negative, not {a.warmups}")
    try:
        goodput = metrics.parse_goodput(a.goodput)
    except ValueError as exc:
        raise ConfigError(f"--goodput: {exc}") from None
    return BenchConfig(num_prompts=a.num_prompts, concurrency=a.concurrency, request_rate=a.request_rate,
                       burstiness=a.burstiness, warmups=a.warmups, seed=a.seed, api=a.api, dataset=a.dataset,
                       input_len=a.input_len, output_len=a.output_len, range_ratio=a.range_ratio,
                       ignore_eos=a.ignore_eos, goodput=goodput, timeout=a.timeout,
                       request_timeout=a.request_timeout, gpu_sampling=not a.no_gpu_sampling)


def load_dataset(path: str) -> list[str]:
    p = Path(path)
    try:
        lines = p.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise ConfigError(f"--dataset {path}: {exc.strerror or exc}") from None
    prompts = []
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except ValueError:
            raise ConfigError(f"--dataset {path}:{n}: not a JSON line") from None
        if not isinstance(obj, dict) or not isinstance(obj.get("prompt"), str) or not obj["prompt"]:
            raise ConfigError(f'--dataset {path}:{n}: expected {{"prompt": "..."}}')
        prompts.append(obj["prompt"])
    if not prompts:
        raise ConfigError(f"--dataset {path} has no prompts")
    return prompts


def build_workload(cfg: BenchConfig) -> list[str]:
    """num_prompts prompts: the dataset's first N (cycled if shorter, as a fixed order), or seeded random."""
    if cfg.dataset:
        data = load_dataset(cfg.dataset)
        return [data[i % len(data)] for i in range(cfg.num_prompts)]
    rng = np.random.default_rng(cfg.seed)
    lo = max(1, int(cfg.input_len * (1 - cfg.range_ratio)))
    hi = max(lo, int(cfg.input_len * (1 + cfg.range_ratio)))
    lens = rng.integers(lo, hi + 1, size=cfg.num_prompts)
    return [" ".join(rng.choice(VOCAB, size=int(n))) for n in lens]


def arrival_gaps(n: int, rate: float, burstiness: float, seed: int) -> list[float]:
    """Gaps (seconds) after each request: 0 for rate inf, else gamma(B, 1/(R*B)) as vLLM draws them."""
    if rate == float("inf"):
        return [0.0] * n
    rng = np.random.default_rng(seed)
    theta = 1.0 / (rate * burstiness)
    return [float(x) for x in rng.gamma(shape=burstiness, scale=theta, size=n)]


@dataclass
class EndpointResult:
    label: str
    engine: str
    url: str
    model: str
    api: str
    num_prompts: int
    metrics: dict[str, Any] = field(default_factory=dict)
    errors: Counter[str] = field(default_factory=Counter)
    requests: list[RequestResult] = field(default_factory=list)
    gpu_peak_mib: dict[str, float] = field(default_factory=dict)
    kv_cache_peak_pct: float | None = None
    engine_stats: dict[str, float] = field(default_factory=dict)
    setup_error: str = ""
    meta: dict[str, str] = field(default_factory=dict)  # the endpoint's own facts (e.g. a provider choice)

    @property
    def completed(self) -> int:
        return int(self.metrics.get("completed", 0))


def request_params(cfg: BenchConfig) -> RequestParams:
    return RequestParams(max_tokens=cfg.output_len, ignore_eos=cfg.ignore_eos, request_timeout=cfg.request_timeout)


async def _resolve(ep: Endpoint, http: Http) -> tuple[Engine, str]:
    engine = engines.get(ep.engine) if ep.engine else await engines.detect(http)
    model = ep.model
    if model is None:
        served = await engine.models(http)
        if not served:
            raise ProtocolError("the endpoint serves no model")
        model = served[0]
    return engine, model


async def _kv_cache_sampler(http: Http, series: tuple[str, ...], stop: asyncio.Event, peak: list[float]) -> None:
    """The engine's KV-cache usage gauge (0..1) from /metrics, sampled until stopped."""
    while not stop.is_set():
        try:
            _, text, _ = await http.request("GET", "/metrics", expect="text")
            for line in text.splitlines():
                if line.startswith(series):
                    peak[0] = max(peak[0], float(line.rsplit(" ", 1)[1]))
        except (ProtocolError, ValueError, IndexError):
            pass
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 0.25)


async def run_endpoint(ep: Endpoint, cfg: BenchConfig, prompts: list[str], client: httpx.AsyncClient,
                       progress: Progress | None = None) -> EndpointResult:
    http = Http(ep.url, cfg.timeout, read_api_key(ep.api_key_file, env=ep.api_key_env), client)
    try:
        engine, model = await _resolve(ep, http)
    except ProtocolError as exc:
        r = EndpointResult(ep.label, ep.engine or "?", ep.url, ep.model or "?", cfg.api or "?", len(prompts),
                           setup_error=exc.reason, meta=dict(ep.meta))
        r.errors[exc.reason] = len(prompts)
        r.metrics = metrics.calculate([RequestResult(error=exc.reason)] * len(prompts), 0.0,
                                      cfg.goodput)
        return r
    api = cfg.api or engine.default_api
    if api not in engine.apis:
        raise ConfigError(f"--api {api} is not served by {ep.label} ({engine.name}: {', '.join(engine.apis)})")
    result = EndpointResult(ep.label, engine.name, ep.url, model, api, len(prompts), meta=dict(ep.meta))
    params = request_params(cfg)

    async def send(prompt: str) -> RequestResult:
        return await engine.send(http, api, model, prompt, params)

    for i in range(cfg.warmups):
        await send(prompts[i % len(prompts)])

    stop = asyncio.Event()
    kv_peak = [0.0]
    samplers = []
    if engine.kv_cache_series:
        samplers.append(asyncio.create_task(_kv_cache_sampler(http, engine.kv_cache_series, stop, kv_peak)))
    gpu_sampler = gpu.MemorySampler.for_endpoint(ep.host, ep.port) if cfg.gpu_sampling else None
    if gpu_sampler:
        gpu_sampler.start()

    sem = asyncio.Semaphore(cfg.concurrency) if cfg.concurrency else None
    task_id = progress.add_task(ep.label, total=len(prompts)) if progress else None

    async def one(prompt: str) -> RequestResult:
        t_wait = time.perf_counter()
        if sem is None:
            res = await send(prompt)
        else:
            async with sem:
                wait = time.perf_counter() - t_wait
                res = await send(prompt)
                res.queue_wait = wait
        if progress is not None and task_id is not None:
            progress.advance(task_id)
        return res

    gaps = arrival_gaps(len(prompts), cfg.request_rate, cfg.burstiness, cfg.seed)
    start = time.perf_counter()
    tasks = []
    for prompt, gap in zip(prompts, gaps, strict=True):
        tasks.append(asyncio.create_task(one(prompt)))
        if gap:
            await asyncio.sleep(gap)
    requests = list(await asyncio.gather(*tasks))
    duration = time.perf_counter() - start
    stop.set()
    await asyncio.gather(*samplers)
    if gpu_sampler:
        result.gpu_peak_mib = gpu_sampler.stop()

    result.requests = requests
    result.metrics = metrics.calculate(requests, duration, cfg.goodput)
    result.errors = Counter(r.error for r in requests if not r.success)
    result.kv_cache_peak_pct = 100 * kv_peak[0] if engine.kv_cache_series else None
    result.engine_stats = engine.summarise([r for r in requests if r.success])
    return result


async def run_all(eps: list[Endpoint], cfg: BenchConfig, prompts: list[str],
                  console: Console | None = None) -> list[EndpointResult]:
    limits = httpx.Limits(max_connections=max(cfg.concurrency or cfg.num_prompts, 1) + 8,
                          max_keepalive_connections=max(cfg.concurrency or cfg.num_prompts, 1) + 8)
    progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                        console=console, transient=False, disable=console is None)
    results = []
    async with httpx.AsyncClient(timeout=httpx.Timeout(cfg.timeout), limits=limits) as client:
        with progress:
            for ep in eps:
                results.append(await run_endpoint(ep, cfg, prompts, client, progress))
    return results
