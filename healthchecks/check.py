"""Health checks per engine: liveness, readiness, function (non-streaming and streaming), GPU residency
(where the engine reports it), auth and metrics. Every engine-specific step comes from the engine module
(``engines/``); all endpoints are checked concurrently; nothing here prints."""

from __future__ import annotations

import asyncio
import functools
import random
import ssl
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import httpx

from . import engines
from .endpoints import Endpoint
from .engines import Engine
from .engines.base import FAIL, PASS, SKIP, WARN
from .errors import ProtocolError
from .protocols import Http, read_api_key

__all__ = ["FAIL", "PASS", "SKIP", "WARN", "Check", "Options", "Report", "check_all", "check_endpoint", "wait_all"]


@dataclass
class Check:
    name: str
    status: str
    latency_ms: float | None
    reason: str


@dataclass
class Report:
    name: str
    engine: str | None
    url: str
    model: str | None = None
    models: list[str] = field(default_factory=list)
    checks: list[Check] = field(default_factory=list)
    diagnosis: dict[str, Any] | None = None
    attempts: int = 1

    @property
    def healthy(self) -> bool:
        return bool(self.checks) and all(c.status != FAIL for c in self.checks)

    @property
    def first_failure(self) -> Check | None:
        return next((c for c in self.checks if c.status == FAIL), None)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["healthy"] = self.healthy
        for c in d["checks"]:
            if c["latency_ms"] is not None:
                c["latency_ms"] = round(c["latency_ms"], 1)
        return d


@dataclass(frozen=True)
class Options:
    timeout: float = 30.0  # per request
    max_tokens: int = 8
    diagnose: bool = True


class _Run:
    """One check pass over one endpoint."""

    def __init__(self, ep: Endpoint, http: Http, report: Report) -> None:
        self.ep = ep
        self.http = http
        self.report = report

    async def step(self, name: str, fn: Callable[[], Awaitable[tuple[str, str]]]) -> bool:
        t0 = time.perf_counter()
        try:
            status, reason = await fn()
        except ProtocolError as exc:
            status, reason = FAIL, exc.reason
        self.report.checks.append(Check(name, status, (time.perf_counter() - t0) * 1000, reason))
        return status != FAIL

    def skip(self, name: str, reason: str) -> None:
        self.report.checks.append(Check(name, SKIP, None, reason))


def pick_model(engine: Engine, wanted: str | None, served: list[str]) -> tuple[str | None, str]:
    """The served model to use: ``wanted`` by the engine's own name matching, else the first served."""
    if not served:
        return None, "no models served"
    if wanted is None:
        return served[0], f"serving {', '.join(served[:5])}"
    for s in served:
        if engine.same_model(wanted, s):
            return s, f"{wanted} served"
    return None, f"model {wanted!r} is not served; served: {', '.join(served[:5])}"


async def _ready(run: _Run, engine: Engine) -> bool:
    async def f() -> tuple[str, str]:
        served = await engine.models(run.http)
        run.report.models = served
        chosen, reason = pick_model(engine, run.ep.model, served)
        run.report.model = chosen
        return (PASS if chosen else FAIL), reason
    return await run.step("readiness", f)


async def _residency(run: _Run, engine: Engine) -> None:
    """A row only for engines whose API reports where the model lives."""
    assert run.report.model is not None
    t0 = time.perf_counter()
    try:
        verdict = await engine.gpu_residency(run.http, run.report.model, run.ep.expect_gpu)
    except ProtocolError as exc:
        verdict = FAIL, exc.reason
    if verdict is not None:
        run.report.checks.append(Check("gpu_residency", verdict[0], (time.perf_counter() - t0) * 1000, verdict[1]))


async def _auth(run: _Run, engine: Engine) -> None:
    if not run.http.api_key:
        run.skip("auth", "no API key configured")
        return

    async def f() -> tuple[str, str]:
        method, path = engine.auth_probe
        status = await run.http.status_only(method, path, auth=False)
        if status in (401, 403):
            return PASS, f"request without the key refused ({status})"
        return FAIL, f"request without the API key answered {status}, expected 401"
    await run.step("auth", f)


async def _metrics(run: _Run, engine: Engine) -> None:
    prefix = engine.metrics_prefix
    if prefix is None:
        return

    async def f() -> tuple[str, str]:
        status = await run.http.status_only("GET", "/metrics")
        if engine.metrics_optional and status in (404, 501):
            return SKIP, f"{engine.spec.title} metrics not enabled (see its --metrics flag)"
        _, text, _ = await run.http.request("GET", "/metrics", expect="text")
        series = sum(1 for line in text.splitlines() if line.startswith(prefix))
        if series == 0:
            return FAIL, f"/metrics has no {prefix} series (not Prometheus text from the engine)"
        return PASS, f"{series} {prefix} series"
    await run.step("metrics", f)


async def check_endpoint(ep: Endpoint, opts: Options, client: httpx.AsyncClient) -> Report:
    report = Report(name=ep.label, engine=ep.engine, url=ep.url, model=ep.model)
    key = read_api_key(ep.api_key_file, env=ep.api_key_env)
    http = Http(ep.url, opts.timeout, key, client)
    run = _Run(ep, http, report)
    if ep.engine is None:
        found: list[Engine] = []

        async def det() -> tuple[str, str]:
            found.append(await engines.detect(http))
            return PASS, f"detected {found[0].name}"
        if not await run.step("detect", det):
            return report
        engine = found[0]
        report.engine = engine.name
        run.ep = ep = replace(ep, engine=engine.name)
    else:
        engine = engines.get(ep.engine)
    if not await run.step("liveness", lambda: engine.liveness(http)):
        for n in ("readiness", "completion", "stream"):
            run.skip(n, "not live")
        return report
    if await _ready(run, engine):
        assert report.model is not None
        for name, fn in engine.function_steps(http, report.model, opts.max_tokens):
            await run.step(name, fn)
        await _residency(run, engine)
    await _auth(run, engine)
    await _metrics(run, engine)
    return report


@functools.cache
def _tls() -> ssl.SSLContext:
    """One verifying TLS context for every client (building one costs tens of ms of CPU)."""
    import certifi

    return ssl.create_default_context(cafile=certifi.where())


def _client(opts: Options) -> httpx.AsyncClient:
    # One small pool per endpoint: httpcore scans every pooled connection on each request, so one client
    # shared by many hosts costs O(hosts) per request.
    return httpx.AsyncClient(timeout=httpx.Timeout(opts.timeout), limits=httpx.Limits(max_connections=8),
                             verify=_tls())


async def _check_own_client(ep: Endpoint, opts: Options) -> Report:
    async with _client(opts) as client:
        return await check_endpoint(ep, opts, client)


async def check_all(eps: list[Endpoint], opts: Options) -> list[Report]:
    reports = await asyncio.gather(*(_check_own_client(e, opts) for e in eps))
    if opts.diagnose:
        await _diagnose(eps, list(reports))
    return list(reports)


async def wait_all(eps: list[Endpoint], opts: Options, wait: float,
                   on_attempt: Callable[[Endpoint, Report, float], None] | None = None,
                   rng: random.Random | None = None) -> list[Report]:
    """Poll each endpoint with exponential backoff and jitter until healthy or ``wait`` seconds pass."""
    rng = rng or random.Random()
    deadline = time.monotonic() + wait

    async def one(ep: Endpoint, client: httpx.AsyncClient) -> Report:
        attempt = 0
        while True:
            attempt += 1
            report = await check_endpoint(ep, opts, client)
            report.attempts = attempt
            left = deadline - time.monotonic()
            if report.healthy or left <= 0:
                if on_attempt:
                    on_attempt(ep, report, 0.0)
                return report
            delay = min(min(30.0, 0.5 * 2 ** (attempt - 1)) * rng.uniform(0.5, 1.5), left)
            if on_attempt:
                on_attempt(ep, report, delay)
            await asyncio.sleep(delay)

    async def own(ep: Endpoint) -> Report:
        async with _client(opts) as client:
            return await one(ep, client)

    reports = list(await asyncio.gather(*(own(e) for e in eps)))
    if opts.diagnose:
        await _diagnose(eps, reports)
    return reports


async def _diagnose(eps: list[Endpoint], reports: list[Report]) -> None:
    from . import diagnose

    todo = [(e, r) for e, r in zip(eps, reports, strict=True) if not r.healthy and diagnose.is_local(e.host)]
    if not todo:
        return
    results = await asyncio.gather(*(asyncio.to_thread(diagnose.for_endpoint, e.port, r.engine) for e, r in todo))
    for (_, r), d in zip(todo, results, strict=True):
        r.diagnosis = d
