"""The smoke benchmark: arrivals, concurrency and the run over the engine interface, request for request as
``vllm bench serve`` runs it (vllm/benchmarks/serve.py). Workloads live in workload.py, statistics in
metrics.py, output in report.py / html_report.py, load sweeps in sweep.py.

Arrivals (serve.py, ``get_request``): with rate R and burstiness B each request's delay is drawn from
``gamma(shape=B, scale=1/(R*B))`` with numpy's legacy global generator seeded by ``--seed`` (vLLM calls
``np.random.seed(seed)``), B = inf means constant gaps of 1/R, the delays are summed and the sums rescaled so
that the last request leaves at exactly N/R; every request, the first included, waits for its own send time
and nothing sleeps after the last. R = inf sends everything at once. ``--ramp-up-strategy`` moves the rate from
start to end RPS (linear or exponential) without the rescale, as vLLM does.

Order of one endpoint's run (serve.py, ``benchmark``): an initial test request with the workload's first
request (its failure ends that endpoint's run), ``--num-warmups`` copies of that request bounded by
``--max-concurrency``, then the timed run: the semaphore wait before a request is its ``queue_wait``, not part
of TTFT. Endpoints are benchmarked one after another so that engines sharing a host do not disturb each other;
an endpoint that fails, however it fails, keeps its own result and never loses the others'.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import math
import os
import signal
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from dataclasses import dataclass, field, replace
from typing import Any

import httpx
import numpy as np
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from . import engines, fastnet, metrics
from .endpoints.url import Endpoint
from .engines import Engine, RequestParams
from .errors import ConfigError, KitError, ProtocolError, redact, unexpected
from .gpu.memory import GpuMemory
from .memory_timeline import TimedMemorySampler
from .metrics import RequestResult
from .protocols import Http, read_api_key, tls_context
from .server_metrics import ServerSeries
from .workload import FunctionTokenizer, LocalTokenizer, SampleRequest, Tokenizer, WorkloadSpec

INF = float("inf")
RAMP_STRATEGIES = ("linear", "exponential")
SCRAPE_INTERVAL = 2.0  # s between /metrics scrapes: ~9 ms of vLLM CPU server time each, under 0.5% of a core
STOP_GRACE = 5.0  # seconds an endpoint may take to wrap up after SIGINT/SIGTERM before it is cancelled


class Stop:
    """SIGINT or SIGTERM during a run (Ctrl-C, a CI job's timeout): sending stops, requests in flight are
    cancelled (counted ``cut_short``), and what completed is kept and reported, marked interrupted. A second
    signal ends the process at once, as the signal's default would."""

    def __init__(self) -> None:
        self.event = asyncio.Event()
        self.signum: int | None = None

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name if self.signum else ""

    def fire(self, signum: int) -> None:
        if self.signum is not None:  # the second one: no more waiting
            signal.signal(signum, signal.default_int_handler if signum == signal.SIGINT else signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            return
        self.signum = signum
        self.event.set()

    @contextlib.contextmanager
    def handling(self) -> Iterator[None]:
        """Catch SIGINT and SIGTERM on the running loop (main thread only; elsewhere nothing changes)."""
        loop = asyncio.get_running_loop()
        sigs: list[signal.Signals] = []
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(ValueError, RuntimeError, NotImplementedError):
                loop.add_signal_handler(sig, self.fire, sig)
                sigs.append(sig)
        token = STOP.set(self)
        try:
            yield
        finally:
            STOP.reset(token)
            for sig in sigs:
                loop.remove_signal_handler(sig)


STOP: contextvars.ContextVar[Stop | None] = contextvars.ContextVar("smoke_bench_stop", default=None)


def stopping() -> bool:
    """True once SIGINT/SIGTERM asked the run to stop."""
    stop = STOP.get()
    return stop is not None and stop.event.is_set()


@dataclass(frozen=True)
class BenchConfig:
    num_prompts: int
    max_concurrency: int | None = None
    request_rate: float = INF
    burstiness: float = 1.0
    num_warmups: int = 0
    seed: int = 0
    api: str | None = None
    workload: WorkloadSpec | None = None  # None: random, input 64 / output 64 tokens
    ignore_eos: bool | None = None  # None: the dataset's default (on for random, as vLLM)
    goodput: dict[str, float] = field(default_factory=dict)
    percentile_metrics: tuple[str, ...] = metrics.METRICS
    metric_percentiles: tuple[float, ...] = metrics.PERCENTILES
    temperature: float | None = None  # None: 0 (greedy), the kit's default for comparable runs
    top_p: float | None = None
    extra_body: dict[str, Any] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)
    ramp_up_strategy: str | None = None
    ramp_up_start_rps: float | None = None
    ramp_up_end_rps: float | None = None
    tokenizer: str | None = None  # local tokenizer.json / model folder / .gguf for engines without /tokenize
    timeout: float = 30.0  # connect/read timeout between chunks
    request_timeout: float = 300.0  # whole request
    gpu_sampling: bool = True
    save_detailed: bool = False  # also the generated texts, as vLLM's --save-detailed
    ca_bundle: str | None = None  # also trusted for https endpoints (see protocols.tls_context)
    insecure: bool = False  # no certificate verification (--insecure)
    max_failure_share: float = 0.0  # the share of failed requests an endpoint may have and still pass (exit 0)
    scrape_interval: float | None = SCRAPE_INTERVAL  # s between /metrics scrapes; None: no scraping
    error_budget: bool = False  # stop a run once more requests failed than max_failure_share allows of all
    num_runs: int = 1  # --num-runs: the same run repeated, each headline figure reported with its spread

    def max_failures(self, n: int) -> int | None:
        """With --error-budget: the failures a run of ``n`` requests may have; one more decides its verdict
        whatever the rest do (failed / ended > share), so the run stops there. None: no budget."""
        return math.floor(self.max_failure_share * n + 1e-9) if self.error_budget else None

    @property
    def spec(self) -> WorkloadSpec:
        return self.workload or WorkloadSpec(num_prompts=self.num_prompts, seed=self.seed)

    @property
    def eos_ignored(self) -> bool:
        return self.spec.default_ignore_eos if self.ignore_eos is None else self.ignore_eos

    def settings(self) -> dict[str, Any]:
        """The run's settings, for the JSON and HTML reports (never a secret: header values are hidden)."""
        s = self.spec
        return {
            "num_prompts": self.num_prompts, "max_concurrency": self.max_concurrency,
            "request_rate": self.request_rate if math.isfinite(self.request_rate) else "inf",
            "burstiness": self.burstiness if math.isfinite(self.burstiness) else "inf",
            "num_warmups": self.num_warmups, "seed": self.seed, "api": self.api,
            "dataset_name": s.dataset_name, "dataset_path": s.dataset_path, "disable_shuffle": s.disable_shuffle,
            "input_len": s.input_len, "output_len": s.out_len, "range_ratio": s.range_ratio,
            "ignore_eos": self.eos_ignored, "goodput": self.goodput or None,
            "percentile_metrics": list(self.percentile_metrics),
            "metric_percentiles": list(self.metric_percentiles),
            "temperature": 0.0 if self.temperature is None else self.temperature, "top_p": self.top_p,
            "extra_body": self.extra_body or None, "headers": sorted(self.headers) or None,
            "ramp_up_strategy": self.ramp_up_strategy, "ramp_up_start_rps": self.ramp_up_start_rps,
            "ramp_up_end_rps": self.ramp_up_end_rps, "tokenizer": self.tokenizer, "timeout": self.timeout,
            "request_timeout": self.request_timeout, "max_failure_share": self.max_failure_share,
            "error_budget": self.error_budget, "scrape_interval": self.scrape_interval, "num_runs": self.num_runs,
            **({"prefix_len": s.prefix_len, "suffix_len": s.suffix_len, "num_prefixes": s.num_prefixes}
               if s.dataset_name == "prefix_repetition" else {}),
        }


def check_ramp(strategy: str | None, start: float | None, end: float | None, rate: float) -> None:
    """vLLM's ramp-up rules (serve.py, ``main_async``), as config errors naming the flag."""
    if strategy is None:
        if start is not None or end is not None:
            raise ConfigError("--ramp-up-start-rps/--ramp-up-end-rps need --ramp-up-strategy")
        return
    if strategy not in RAMP_STRATEGIES:
        raise ConfigError(f"--ramp-up-strategy {strategy}: expected linear or exponential")
    if math.isfinite(rate):
        raise ConfigError("--ramp-up-strategy sets the rate: do not give --request-rate with it")
    if start is None or end is None:
        raise ConfigError("--ramp-up-strategy needs --ramp-up-start-rps and --ramp-up-end-rps")
    if start > end:
        raise ConfigError(f"--ramp-up-start-rps {start} must not exceed --ramp-up-end-rps {end}")
    if strategy == "exponential" and start == 0:
        raise ConfigError("--ramp-up-strategy exponential cannot start at 0 RPS")


def current_rate(index: int, total: int, rate: float, ramp: tuple[str, float, float] | None) -> float:
    """vLLM's ``_get_current_request_rate``."""
    if ramp is None:
        return rate
    strategy, start, end = ramp
    progress = index / max(total - 1, 1)
    if strategy == "linear":
        return start + (end - start) * progress
    return start * (end / start) ** progress


def send_times(n: int, rate: float, burstiness: float, seed: int,
               ramp: tuple[str, float, float] | None = None) -> list[float]:
    """Each request's send time in seconds after the start, exactly as vLLM's ``get_request`` computes them
    with ``np.random.seed(seed)`` before (so the same seed gives vLLM's schedule, for every dataset that does
    not draw from numpy's global generator: random, custom, sharegpt)."""
    rng = np.random.RandomState(seed)
    delays: list[float] = []
    for i in range(n):
        r = current_rate(i, n, rate, ramp)
        if r <= 0:
            raise ConfigError(f"the request rate at request {i} is {r}: rates must be positive")
        if r == INF:
            delays.append(0.0)
        elif burstiness == INF:
            delays.append(1.0 / r)
        else:
            delays.append(float(rng.gamma(shape=burstiness, scale=1.0 / (r * burstiness))))
    for i in range(1, n):
        delays[i] += delays[i - 1]
    if ramp is None and n and delays[-1] != 0:
        factor = (n / rate) / delays[-1]
        delays = [d * factor for d in delays]
    return delays


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
    workload: list[SampleRequest] = field(default_factory=list)
    gpu_peak_mib: dict[str, float] = field(default_factory=dict)  # each GPU's device total peak (MiB)
    gpu_memory: GpuMemory | None = None  # the engine's own processes per GPU (EngineMemorySampler)
    kv_cache_peak_pct: float | None = None
    engine_stats: dict[str, float] = field(default_factory=dict)
    setup_error: str = ""
    meta: dict[str, str] = field(default_factory=dict)  # the endpoint's own facts (e.g. a provider choice)
    tokens_from: str = ""  # whose tokenizer counted the prompts (engine endpoint, local file, words)
    warnings: Counter[str] = field(default_factory=Counter)  # the kit's stricter findings on vLLM successes
    sweep: dict[str, Any] | None = None  # sweep.py: the load ladder and the best point within the SLOs
    cut_short: int = 0  # requests not sent or cancelled at --max-seconds (or at SIGINT/SIGTERM, the error budget)
    scrapes: dict[str, Any] | None = None  # Scrapes.to_dict: what watching the server's /metrics cost
    server_metrics: dict[str, Any] | None = None  # ServerSeries.to_dict: the server's own figures over the run
    stopped_early: str = ""  # why the run stopped before its last request (the error budget), "" otherwise
    interrupted: str = ""  # "SIGINT"/"SIGTERM" when the run was stopped by it (what completed is kept)

    @property
    def completed(self) -> int:
        return int(self.metrics.get("completed", 0))

    @property
    def served_by(self) -> dict[str, int] | None:
        """Who answered each successful request (a router's provider), or None when no request says."""
        names = Counter(r.served_by for r in self.requests if r.served_by is not None)
        return dict(names) if names else None

    @property
    def failovers(self) -> int:
        return sum(r.failovers for r in self.requests)


def budget_line(point: Point, cfg: BenchConfig) -> str:
    failed = sum(1 for r in point.requests if not r.success)
    return (f"error budget spent: {failed} requests failed, more than --max-failure-share {cfg.max_failure_share:g} "
            f"allows of {len(point.requests) + point.cut_short}; stopped early")


def failure_share(r: EndpointResult) -> float | None:
    """Failed requests over the requests that ended (completed + failed; requests never sent or cancelled at
    --max-seconds are neither); None when none ended."""
    failed = int(r.metrics.get("failed", 0) or 0)
    ended = r.completed + failed
    return failed / ended if ended else None


def verdict(r: EndpointResult, cfg: BenchConfig) -> str:
    """Why this endpoint fails the run (exit 1), or "" when it passes. A single run passes when requests
    completed and the failed share is at most ``cfg.max_failure_share``; a sweep passes when a load met the SLOs
    (its failed requests already count against the attainment)."""
    if r.setup_error:
        return r.setup_error
    if r.interrupted and r.completed == 0:
        return f"interrupted by {r.interrupted} before a request completed"
    if r.sweep is not None:
        return "" if r.sweep.get("best") else "no load met the SLOs"
    share = failure_share(r)
    if r.completed == 0 or share is None:
        return "no request completed"
    if share > cfg.max_failure_share:
        return (f"{share:.1%} of requests failed, more than --max-failure-share {cfg.max_failure_share:g} "
                f"allows")
    return ""


def request_params(cfg: BenchConfig) -> RequestParams:
    return RequestParams(max_tokens=cfg.spec.out_len, ignore_eos=cfg.eos_ignored,
                         request_timeout=cfg.request_timeout, extra=dict(cfg.extra_body),
                         temperature=cfg.temperature, top_p=cfg.top_p, headers=dict(cfg.headers))


@dataclass
class Target:
    """One endpoint, resolved and ready: engine, model, API, and its workload once built."""

    ep: Endpoint
    http: Http
    engine: Engine
    model: str
    api: str
    workload: list[SampleRequest] = field(default_factory=list)
    tokens_from: str = ""

    async def send(self, req: SampleRequest, params: RequestParams) -> RequestResult:
        p = params if req.expected_output_len == params.max_tokens else replace(
            params, max_tokens=req.expected_output_len)
        t0 = time.perf_counter()
        res = await self.engine.send(self.http, self.api, self.model, req.prompt, p)
        if not res.start_time:
            res.start_time = t0
        if res.prompt_tokens is None and req.prompt_len is not None:
            res.prompt_tokens = req.prompt_len  # vLLM: the dataset's prompt_len unless the server reports one
        if res.error or res.warning:  # server text: a key it echoes back is never printed or saved
            res.error, res.warning = redact(res.error), redact(res.warning)
        return res


async def resolve(ep: Endpoint, cfg: BenchConfig, client: httpx.AsyncClient) -> Target | EndpointResult:
    """Engine (detected for bare URLs) and model (the first served when not given): probes only, no
    benchmark request. A failure is that endpoint's result."""
    try:
        key = read_api_key(ep.api_key_file, env=ep.api_key_env)
        http = Http(ep.url, cfg.timeout, key, client)
        # detected for a bare URL: its label names the engine, its own --model / --api-key-file apply
        ep, engine, http = await engines.resolve(ep, http)
        model = ep.model
        if model is not None and engine.missing_model_hint(model):  # an engine that pulls: say how, up front
            served = await engine.models(http)
            if not any(engine.same_model(model, s) for s in served):
                raise ProtocolError(f"model {model!r} is not served; {engine.missing_model_hint(model)}")
        if model is None:
            served = await engine.models(http)
            if not served:
                raise ProtocolError("the endpoint serves no model")
            model = served[0]
    except ProtocolError as exc:
        return failed_result(ep, cfg, exc.reason)
    except ConfigError:
        raise  # a bad setting (an API key file, --ca-bundle): exit 2 for the whole run
    except Exception as exc:  # whatever else breaks is this endpoint's failure, never the run's
        return failed_result(ep, cfg, unexpected(exc))
    return Target(ep, http, engine, model, cfg.api or engine.default_api)


def failed_result(ep: Endpoint, cfg: BenchConfig, reason: str, target: Target | None = None,
                  first: RequestResult | None = None) -> EndpointResult:
    """An endpoint that could not be benchmarked: every request counted failed with the reason. ``first``: the
    initial test request that failed, whose server request id and failed attempts the first entry keeps."""
    n = cfg.num_prompts
    r = EndpointResult(ep.label, target.engine.name if target else ep.engine or "?", ep.url,
                       target.model if target else ep.model or "?",
                       target.api if target else cfg.api or "?", n, setup_error=reason, meta=dict(ep.meta))
    r.requests = [RequestResult(error=reason) for _ in range(n)]
    if first is not None and r.requests:
        r.requests[0].request_id, r.requests[0].failed_attempts = first.request_id, list(first.failed_attempts)
    r.errors[reason] = n
    r.metrics = metrics.calculate(r.requests, 0.0, cfg.goodput, cfg.metric_percentiles, cfg.percentile_metrics)
    return r


def check_apis(targets: list[Target]) -> None:
    """Every endpoint must serve the API asked for; checked for all before the first benchmark request."""
    for t in targets:
        if t.api not in t.engine.apis:
            raise ConfigError(f"--api {t.api} is not served by {t.ep.label} ({t.engine.name} serves "
                              f"{', '.join(t.engine.apis)})")


async def tokenizer_for(t: Target, local: LocalTokenizer | None) -> tuple[Tokenizer | None, str]:
    """The engine's own tokenizer endpoints, else the local --tokenizer, else None (words)."""
    remote = FunctionTokenizer(f"{t.engine.name} /tokenize",
                               lambda text: t.engine.tokenize(t.http, t.model, text),
                               lambda ids: t.engine.detokenize(t.http, t.model, ids))
    why = f"{t.engine.name} has no tokenizer endpoint"
    try:
        probe = await t.engine.tokenize(t.http, t.model, "hello world")
        if probe:
            return remote, f"{t.engine.name} /tokenize"
    except ProtocolError as exc:
        why = f"{t.engine.name} /tokenize failed: {exc.reason}"
    if local is not None:
        return local, local.name
    return None, f"words ({why} and no --tokenizer)"


async def prepare(t: Target, cfg: BenchConfig, local: LocalTokenizer | None) -> None:
    tok: Tokenizer | None = None
    t.tokens_from = "server usage"
    if cfg.spec.needs_tokenizer:
        tok, t.tokens_from = await tokenizer_for(t, local)
    t.workload = await cfg.spec.build(tok, concurrency=4)  # few connections: some servers have few HTTP threads


@dataclass
class Point:
    """One timed run: the per-request results and the wall duration."""

    requests: list[RequestResult]
    duration: float
    cut_short: int = 0
    budget_spent: bool = False  # stopped by the error budget (more failures than --max-failure-share allows)


async def timed_run(send: Callable[[SampleRequest], Awaitable[RequestResult]], reqs: list[SampleRequest], *,
                    rate: float, burstiness: float, seed: int, max_concurrency: int | None,
                    ramp: tuple[str, float, float] | None = None, deadline: float | None = None,
                    on_done: Callable[[], None] | None = None, max_failures: int | None = None) -> Point:
    """vLLM's benchmark loop: send each request at its time, bounded by the semaphore; the duration runs from
    before the first send time to the last answer. With ``deadline`` (perf_counter), requests not yet sent
    are dropped and those in flight cancelled when it passes (``cut_short``); the same when SIGINT/SIGTERM
    arrive (:class:`Stop`) or, with ``max_failures`` (the error budget), once more requests than that failed."""
    times = send_times(len(reqs), rate, burstiness, seed, ramp)
    sem = asyncio.Semaphore(max_concurrency) if max_concurrency else None

    async def one(req: SampleRequest, arrival: float) -> RequestResult:
        if sem is None:
            res = await send(req)
        else:
            async with sem:
                res = await send(req)
        res.queue_wait = max(res.start_time - arrival, 0.0)
        if on_done is not None:
            on_done()
        if not res.success and max_failures is not None and halt is not None:
            failures[0] += 1
            if failures[0] > max_failures:
                halt.set()
        return res

    signalled = STOP.get()
    failures = [0]
    halt: asyncio.Event | None = signalled.event if signalled is not None else None
    relay: asyncio.Future[Any] | None = None
    if max_failures is not None:
        halt = asyncio.Event()
        if signalled is not None:
            relay = asyncio.ensure_future(_relay(signalled.event, halt))
    try:
        point = await _send_all(reqs, times, one, halt, deadline)
    finally:
        if relay is not None:
            relay.cancel()
    point.budget_spent = max_failures is not None and failures[0] > max_failures
    return point


async def _relay(src: asyncio.Event, dst: asyncio.Event) -> None:
    await src.wait()
    dst.set()


async def _send_all(reqs: list[SampleRequest], times: list[float],
                    one: Callable[[SampleRequest, float], Coroutine[Any, Any, RequestResult]],
                    stop: asyncio.Event | None, deadline: float | None) -> Point:
    start = time.perf_counter()
    tasks: list[asyncio.Task[RequestResult]] = []
    for req, at in zip(reqs, times, strict=True):
        if at > 0:
            wait = start + at - time.perf_counter()
            if deadline is not None and time.perf_counter() + max(wait, 0.0) > deadline:
                break
            if wait > 0:
                if stop is None:
                    await asyncio.sleep(wait)
                else:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), wait)
        if stop is not None and stop.is_set():
            break
        tasks.append(asyncio.create_task(one(req, time.perf_counter())))
    if deadline is None and stop is None:
        results = list(await asyncio.gather(*tasks))
    else:  # all answered, or the deadline / a signal cuts the rest: O(n), two waiters whatever n is
        every = asyncio.gather(*tasks, return_exceptions=True)
        waiters: set[asyncio.Future[Any]] = {every}
        stopped = asyncio.ensure_future(stop.wait()) if stop is not None else None
        if stopped is not None:
            waiters.add(stopped)
        timeout = None if deadline is None else max(deadline - time.perf_counter(), 0.0)
        await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        if stopped is not None:
            stopped.cancel()
        for task in tasks:
            task.cancel()  # a no-op for those done
        await asyncio.gather(*tasks, return_exceptions=True)
        for task in tasks:
            if task.done() and not task.cancelled() and (exc := task.exception()) is not None:
                raise exc
        results = [t.result() for t in tasks if not t.cancelled()]
    duration = time.perf_counter() - start
    return Point(results, duration, len(reqs) - len(results))




@dataclass
class Scrapes:
    """What scraping the engine's /metrics cost: how many, and the time the server took to answer them."""

    interval: float
    count: int = 0
    seconds: float = 0.0

    def to_dict(self, run_seconds: float) -> dict[str, Any]:
        mean_ms = 1000 * self.seconds / self.count if self.count else None
        return {"interval_s": self.interval, "scrapes": self.count, "mean_response_ms": mean_ms,
                "response_share_of_run": self.seconds / run_seconds if run_seconds > 0 else None}


async def _server_sampler(t: Target, stop: asyncio.Event, series: ServerSeries, scrapes: Scrapes,
                          started: float) -> None:
    """The engine's own figures (its ``metric_table``: /metrics, or /api/ps for Ollama), scraped every
    ``scrapes.interval`` s until stopped, then once more at the end (the counters then span the whole run);
    each scrape's response time is added up (an upper bound of the server time it cost). The first failed
    scrape ends the watching with a note (llama-server without --metrics answers 404)."""
    while True:
        last = stop.is_set()
        t0 = time.perf_counter()
        try:
            raw = await t.engine.sample_server(t.http)
        except ProtocolError as exc:
            scrapes.count += 1
            scrapes.seconds += time.perf_counter() - t0
            if not series.samples:
                series.note = t.engine.server_metrics_missing(exc.reason)
                return
            raw = None
        else:
            scrapes.count += 1
            scrapes.seconds += time.perf_counter() - t0
        if raw is not None:
            series.add(t0 - started, raw)
        if last:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), scrapes.interval)


class Samplers:
    """The server's own figures and GPU memory, sampled while a timed run goes on."""

    def __init__(self, t: Target, cfg: BenchConfig) -> None:
        self.t, self.stop = t, asyncio.Event()
        self.task: asyncio.Task[None] | None = None
        table = t.engine.metric_table()
        self.scrapes = Scrapes(cfg.scrape_interval) if cfg.scrape_interval and table else None
        self.series = ServerSeries(table, t.engine.server_metrics_source(), t.engine.server_metrics_path)
        self.started = time.perf_counter()
        self.gpu = TimedMemorySampler(t.ep.host, t.ep.port, self.started) if cfg.gpu_sampling else None

    def start(self) -> None:
        self.started = time.perf_counter()
        if self.scrapes is not None:
            self.task = asyncio.create_task(_server_sampler(self.t, self.stop, self.series, self.scrapes,
                                                            self.started))
        if self.gpu:
            self.gpu.t0 = self.started
            self.gpu.start()

    async def finish(self, result: EndpointResult) -> None:
        self.stop.set()
        if self.task:
            await self.task
        if self.gpu:
            result.gpu_memory = self.gpu.stop()
            result.gpu_peak_mib = dict(result.gpu_memory.device_peak_mib)
        if self.scrapes is not None:
            result.scrapes = self.scrapes.to_dict(time.perf_counter() - self.started)
            result.server_metrics = self.series.to_dict(self.scrapes.interval, self.gpu)
            kv = self.series.peak("kv_cache")
            result.kv_cache_peak_pct = float(kv) if kv is not None else None
        elif self.gpu is not None and self.gpu.samples:
            result.server_metrics = {"source": None, "note": "server metrics not scraped", "metrics": {},
                                     "samples": [], "gpu_samples": self.gpu.series()}


async def warm_up(t: Target, cfg: BenchConfig, params: RequestParams) -> RequestResult | None:
    """vLLM's initial test request, then --num-warmups copies of it (bounded by --max-concurrency); returns
    the initial request when it failed (None when it succeeded)."""
    first = t.workload[0]
    res = await t.send(first, params)
    if not res.success:
        return res
    sem = asyncio.Semaphore(cfg.max_concurrency or max(cfg.num_warmups, 1))

    async def one() -> None:
        async with sem:
            await t.send(first, params)

    await asyncio.gather(*(one() for _ in range(cfg.num_warmups)))
    return None


def fill(result: EndpointResult, point: Point, cfg: BenchConfig, t: Target) -> None:
    result.requests = point.requests
    result.cut_short = point.cut_short
    result.metrics = metrics.calculate(point.requests, point.duration, cfg.goodput, cfg.metric_percentiles,
                                       cfg.percentile_metrics)
    result.errors = Counter(r.error for r in point.requests if not r.success)
    result.warnings = Counter(r.warning for r in point.requests if r.success and r.warning)
    result.engine_stats = t.engine.summarise([r for r in point.requests if r.success])


async def run_endpoint(t: Target, cfg: BenchConfig, local: LocalTokenizer | None,
                       progress: Progress | None = None) -> EndpointResult:
    """One endpoint's benchmark: workload, initial test, warm-ups, the timed run."""
    await prepare(t, cfg, local)
    result = EndpointResult(t.ep.label, t.engine.name, t.ep.url, t.model, t.api, cfg.num_prompts,
                            meta=dict(t.ep.meta), tokens_from=t.tokens_from, workload=t.workload)
    params = request_params(cfg)
    first = await warm_up(t, cfg, params)
    if first is not None:
        failed = failed_result(t.ep, cfg, f"initial test request failed: {first.error}", t, first)
        failed.tokens_from, failed.workload = t.tokens_from, t.workload
        return failed
    task: TaskID | None = progress.add_task(t.ep.label, total=len(t.workload)) if progress else None

    def advance() -> None:
        if progress is not None and task is not None:
            progress.advance(task)

    samplers = Samplers(t, cfg)
    samplers.start()
    ramp = (cfg.ramp_up_strategy, float(cfg.ramp_up_start_rps or 0), float(cfg.ramp_up_end_rps or 0)) \
        if cfg.ramp_up_strategy else None
    point = await timed_run(lambda r: t.send(r, params), t.workload, rate=cfg.request_rate,
                            burstiness=cfg.burstiness, seed=cfg.seed, max_concurrency=cfg.max_concurrency,
                            ramp=ramp, on_done=advance, max_failures=cfg.max_failures(len(t.workload)))
    await samplers.finish(result)
    fill(result, point, cfg, t)
    if point.budget_spent:
        result.stopped_early = budget_line(point, cfg)
    return result


def progress_bar(console: Console | None) -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    TextColumn("ETA"), TimeRemainingColumn(), console=console, transient=False,
                    disable=console is None)


Runner = Callable[[Target, BenchConfig, "LocalTokenizer | None", Progress], Awaitable[EndpointResult]]


async def run_all(eps: list[Endpoint], cfg: BenchConfig, console: Console | None = None,
                  runner: Runner | None = None) -> list[EndpointResult]:
    """Resolve every endpoint and check its API (probes only), then benchmark them one after another. An
    endpoint that fails keeps its own one-line reason; the others' results are always kept."""
    return (await run_series(eps, cfg, 1, console, runner))[0]


async def run_series(eps: list[Endpoint], cfg: BenchConfig, runs: int, console: Console | None = None,
                     runner: Runner | None = None) -> list[list[EndpointResult]]:
    """``--num-runs``: the same run ``runs`` times, one after another, each as :func:`run_all` runs it (the
    same seed, so the same prompts and arrivals: what varies is the server and the machine). SIGINT/SIGTERM
    stop the series: the runs that completed are kept, the one in progress is returned marked interrupted (what
    it completed kept), the rest are not started."""
    local = LocalTokenizer(cfg.tokenizer) if cfg.tokenizer else None
    conc = max(cfg.max_concurrency or cfg.num_prompts, cfg.num_warmups, 1)
    # idle keep-alive connections are dropped after 1 s: llama-server serves each open connection with one of its
    # few HTTP threads (--threads-http, default parallel + 2), so idle ones left from the tokenizer or warm-up
    # phase would hold those threads while the next requests wait in its accept queue
    limits = httpx.Limits(max_connections=conc + 8, max_keepalive_connections=conc + 8, keepalive_expiry=1.0)
    series: list[list[EndpointResult]] = []
    stop = Stop()
    with stop.handling():
        for _ in range(runs):
            if stop.event.is_set():
                break
            results: list[EndpointResult] = []
            series.append(results)
            await _run_each(eps, cfg, local, limits, progress_bar(console), runner, stop, results)
            for r in results:
                r.interrupted = stop.name
    return series


async def _run_each(eps: list[Endpoint], cfg: BenchConfig, local: LocalTokenizer | None, limits: httpx.Limits,
                    progress: Progress, runner: Runner | None, stop: Stop, results: list[EndpointResult]) -> None:
    async with httpx.AsyncClient(timeout=httpx.Timeout(cfg.timeout), limits=limits,
                                 verify=tls_context(cfg.ca_bundle, insecure=cfg.insecure)) as client:
        fastnet.install(client)  # httpcore on plain asyncio streams: the pool's per-request checks stay cheap
        resolved = await asyncio.gather(*(resolve(ep, cfg, client) for ep in eps))
        check_apis([t for t in resolved if isinstance(t, Target)])
        with progress:
            for ep, t in zip(eps, resolved, strict=True):
                if isinstance(t, EndpointResult):
                    results.append(t)
                    continue
                if stop.event.is_set():
                    results.append(failed_result(ep, cfg, f"not run: interrupted by {stop.name}", t))
                    continue
                try:
                    results.append(await _until_stopped((runner or run_endpoint)(t, cfg, local, progress), stop))
                except KitError as exc:
                    results.append(failed_result(ep, cfg, exc.reason, t))
                except _Abandoned:
                    results.append(failed_result(ep, cfg, f"interrupted by {stop.name} before its timed run "
                                                 "ended", t))
                except Exception as exc:  # one endpoint's surprise never loses the others' results
                    results.append(failed_result(ep, cfg, unexpected(exc), t))


class _Abandoned(Exception):  # internal: an endpoint cancelled STOP_GRACE after the signal
    pass


async def _until_stopped(work: Awaitable[EndpointResult], stop: Stop) -> EndpointResult:
    """The endpoint's result; after a signal it has STOP_GRACE seconds to stop its timed run and report (its
    initial test request or warm-ups may hang on a slow server): past that it is cancelled."""
    task = asyncio.ensure_future(work)
    stopped = asyncio.ensure_future(stop.event.wait())
    try:
        await asyncio.wait({task, stopped}, return_when=asyncio.FIRST_COMPLETED)
        if not task.done():
            await asyncio.wait({task}, timeout=STOP_GRACE)
        if not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            raise _Abandoned
        return task.result()
    finally:
        stopped.cancel()
