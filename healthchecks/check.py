"""Health checks per engine: liveness, readiness, function (non-streaming and streaming), GPU residency
(Ollama), auth and metrics. All endpoints are checked concurrently; nothing here prints."""

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

from .endpoints import Endpoint
from .protocols import Http, ProtocolError, read_api_key
from .protocols import ollama as ol
from .protocols import openai as oa

PASS, FAIL, WARN, SKIP = "pass", "fail", "warn", "skip"
PROMPT = "Reply with one short sentence: what is 2 + 2?"


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


async def detect_engine(http: Http) -> str:
    """Probe a bare URL: llama-server has /props, vLLM /version, Ollama answers 'Ollama is running' on /."""

    async def probe(path: str) -> tuple[int, str]:
        try:
            r = await http.client.get(http.base + path, headers=http.headers(), timeout=http.timeout)
            return r.status_code, r.text[:2000]
        except httpx.HTTPError:
            return 0, ""

    (s_props, t_props), (s_ver, t_ver), (s_root, t_root), (s_models, _) = await asyncio.gather(
        probe("/props"), probe("/version"), probe("/"), probe("/v1/models"))
    if s_root == 200 and "Ollama is running" in t_root:
        return "ollama"
    if s_props == 200 and ("default_generation_settings" in t_props or "build_info" in t_props):
        return "llamacpp"
    if s_ver == 200 and '"version"' in t_ver:
        return "vllm"
    if s_models in (200, 401, 403):
        return "openai"
    # Nothing answered like an engine: surface the transport error of the plainest request.
    await http.request("GET", "/", expect="text")
    raise ProtocolError(f"{http.base} answers HTTP but not like vLLM, llama.cpp, Ollama or an OpenAI API")


def _pick_model(wanted: str | None, served: list[str], engine: str) -> tuple[str | None, str]:
    if not served:
        return None, "no models served"
    if wanted is None:
        return served[0], f"serving {', '.join(served[:5])}"
    match = (lambda a, b: ol.same_model(a, b)) if engine == "ollama" else (lambda a, b: a == b)
    for s in served:
        if match(wanted, s):
            return s, f"{wanted} served"
    return None, f"model {wanted!r} is not served; served: {', '.join(served[:5])}"


async def _live(run: _Run, engine: str) -> bool:
    http = run.http
    if engine == "ollama":
        async def f() -> tuple[str, str]:
            _, text, _ = await http.request("GET", "/", expect="text")
            if "Ollama is running" not in text:
                return FAIL, f"GET / answered {text.strip()[:60]!r}, not 'Ollama is running'"
            _, ver, _ = await http.request("GET", "/api/version")
            return PASS, f"Ollama {ver.get('version', '?') if isinstance(ver, dict) else '?'}"
        return await run.step("liveness", f)
    if engine in ("vllm", "llamacpp"):
        async def g() -> tuple[str, str]:
            try:
                await http.request("GET", "/health", expect="text")
            except ProtocolError as exc:
                if exc.status == 503 and engine == "llamacpp":
                    return FAIL, "GET /health 503: llama-server is still loading the model"
                raise
            return PASS, "GET /health 200"
        return await run.step("liveness", g)
    # generic OpenAI-compatible server: the models list is the only standard liveness probe
    async def h() -> tuple[str, str]:
        await oa.models(http)
        return PASS, "GET /v1/models answered"
    return await run.step("liveness", h)


async def _ready(run: _Run, engine: str) -> bool:
    async def f() -> tuple[str, str]:
        served = await (ol.tags(run.http) if engine == "ollama" else oa.models(run.http))
        run.report.models = served
        chosen, reason = _pick_model(run.ep.model, served, engine)
        run.report.model = chosen
        return (PASS if chosen else FAIL), reason
    return await run.step("readiness", f)


async def _function(run: _Run, engine: str, opts: Options) -> None:
    http, model = run.http, run.report.model
    assert model is not None
    if engine == "ollama":
        async def native() -> tuple[str, str]:
            body = await ol.chat(http, model, PROMPT, opts.max_tokens)
            text = str((body.get("message") or {}).get("content") or "")
            if not text.strip():
                return FAIL, "empty answer from /api/chat"
            return PASS, f"/api/chat: {body.get('eval_count', '?')} tokens"
        await run.step("completion", native)

        async def native_stream() -> tuple[str, str]:
            pieces, final = [], {}
            async for _, ev in http.stream("/api/chat", ol.chat_payload(model, PROMPT, opts.max_tokens, True),
                                           "ndjson"):
                pieces.append(str((ev.get("message") or {}).get("content") or ""))
                final = ev
            if not "".join(pieces).strip():
                return FAIL, "empty streamed answer from /api/chat"
            return PASS, f"/api/chat NDJSON: {len(pieces)} lines, eval_count {final.get('eval_count', '?')}"
        await run.step("stream", native_stream)
        await run.step("openai_v1", lambda: _openai_stream(http, model, opts, "/v1 "))
        return

    async def plain() -> tuple[str, str]:
        text, usage = await oa.chat(http, model, PROMPT, opts.max_tokens)
        if not text.strip():
            return FAIL, "empty answer from /v1/chat/completions"
        return PASS, f"{usage.get('completion_tokens', '?')} tokens"
    await run.step("completion", plain)
    await run.step("stream", lambda: _openai_stream(http, model, opts, ""))


async def _openai_stream(http: Http, model: str, opts: Options, prefix: str) -> tuple[str, str]:
    chunks, text, usage = 0, [], {}
    async for _, ev in oa.stream(http, "/v1/chat/completions", oa.chat_payload(model, PROMPT, opts.max_tokens, True)):
        piece = oa.chunk_text(ev)
        if piece is not None:
            chunks += 1
            text.append(piece)
        if ev.get("usage"):
            usage = ev["usage"]
    if not "".join(text).strip():
        return FAIL, f"{prefix}empty streamed answer"
    return PASS, f"{prefix}SSE: {chunks} chunks, {usage.get('completion_tokens', '?')} tokens"


async def _vram(run: _Run) -> None:
    async def f() -> tuple[str, str]:
        loaded = await ol.ps(run.http)
        entry = next((m for m in loaded if ol.same_model(str(m.get("name")), str(run.report.model))), None)
        if entry is None:
            return FAIL, f"{run.report.model} is not loaded (/api/ps) right after a request"
        size, vram = int(entry.get("size") or 0), int(entry.get("size_vram") or 0)
        if vram > 0:
            share = f"{100 * vram / size:.0f}%" if size else "?"
            return PASS, f"{vram / 2**20:.0f} MiB in VRAM ({share} of the model)"
        if run.ep.expect_gpu is False:
            return PASS, "in system RAM (size_vram 0), as configured for a host without GPU"
        status = FAIL if run.ep.expect_gpu else WARN
        return status, "model runs on the CPU (size_vram 0): GPU not visible to Ollama (check the NVIDIA runtime)"
    await run.step("gpu_residency", f)


async def _auth(run: _Run, engine: str) -> None:
    if not run.http.api_key:
        run.skip("auth", "no API key configured")
        return

    async def f() -> tuple[str, str]:
        path = "/api/tags" if engine == "ollama" else "/v1/models"
        status = await run.http.status_only("GET", path, auth=False)
        if status in (401, 403):
            return PASS, f"request without the key refused ({status})"
        return FAIL, f"request without the API key answered {status}, expected 401"
    await run.step("auth", f)


async def _metrics(run: _Run, engine: str) -> None:
    if engine not in ("vllm", "llamacpp"):
        return

    async def f() -> tuple[str, str]:
        status = await run.http.status_only("GET", "/metrics")
        if engine == "llamacpp" and status in (404, 501):
            return SKIP, "llama-server metrics not enabled (start it with --metrics)"
        _, text, _ = await run.http.request("GET", "/metrics", expect="text")
        prefix = "vllm:" if engine == "vllm" else "llamacpp:"
        series = sum(1 for line in text.splitlines() if line.startswith(prefix))
        if series == 0:
            return FAIL, f"/metrics has no {prefix} series (not Prometheus text from the engine)"
        return PASS, f"{series} {prefix} series"
    await run.step("metrics", f)


async def check_endpoint(ep: Endpoint, opts: Options, client: httpx.AsyncClient) -> Report:
    report = Report(name=ep.label, engine=ep.engine, url=ep.url, model=ep.model)
    key = read_api_key(ep.api_key_file)
    http = Http(ep.url, opts.timeout, key, client)
    run = _Run(ep, http, report)
    engine = ep.engine
    if engine is None:
        async def det() -> tuple[str, str]:
            nonlocal engine
            engine = await detect_engine(http)
            return PASS, f"detected {engine}"
        if not await run.step("detect", det):
            return report
        report.engine = engine
        run.ep = ep = replace(ep, engine=engine)
    assert engine is not None
    if not await _live(run, engine):
        for n in ("readiness", "completion", "stream"):
            run.skip(n, "not live")
        return report
    if await _ready(run, engine):
        await _function(run, engine, opts)
        if engine == "ollama":
            await _vram(run)
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
    results = await asyncio.gather(*(asyncio.to_thread(diagnose.for_endpoint, e.port) for e, _ in todo))
    for (_, r), d in zip(todo, results, strict=True):
        r.diagnosis = d
