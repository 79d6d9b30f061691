"""Health checks per engine: liveness, readiness, function (non-streaming and streaming), GPU residency
(where the engine reports it), auth and metrics. Every engine-specific step comes from the engine module
(``engines/``); all endpoints are checked concurrently; nothing here prints."""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import httpx

from . import engines
from .endpoints.url import Endpoint
from .engines import Engine
from .engines.base import STRUCTURED_SCHEMA
from .errors import ConfigError, ProtocolError, unexpected
from .protocols import Http, cert_expiry, one_line, read_api_key, tls_context
from .protocols.retry import backoff
from .verdicts import FAIL, PASS, SKIP, WARN

__all__ = ["FAIL", "PASS", "SKIP", "WARN", "Check", "Options", "Report", "check_all", "check_endpoint",
           "wait_all"]


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
    version: str | None = None  # the engine's own version / build string, when its API reports one

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
    ca_bundle: str | None = None  # also trusted, beside the system store (see protocols.tls_context)
    insecure: bool = False  # no certificate verification
    capabilities: bool = True  # structured-output row (embeddings: found by itself)
    cert_warn_days: float = 14.0  # a certificate expiring sooner is a warning row


STRUCTURED_MIN_TOKENS = 48  # room for {"answer": 4} and the whitespace a grammar allows
EMBEDDING_HINT_STATUS = (400, 404, 405, 422, 501)  # how engines refuse chat for an embedding-only model


WAIT_CAP_S = 30.0  # --wait: polls back off like every retry of the kit, up to 30 s apart
ROW_TIMEOUTS = 3  # a row may make a few requests: it ends within this many --timeout (see _Run.step)


class _Run:
    """One check pass over one endpoint."""

    def __init__(self, ep: Endpoint, http: Http, report: Report, timeout: float) -> None:
        self.ep = ep
        self.http = http
        self.report = report
        # --timeout bounds each read (httpx), so a server that keeps sending a byte now and then would hold a row,
        # and the whole run, forever: each row also ends within ROW_TIMEOUTS x --timeout, on its own
        self.row_budget = timeout * ROW_TIMEOUTS

    async def step(self, name: str, fn: Callable[[], Awaitable[tuple[str, str]]]) -> bool:
        t0 = time.perf_counter()
        try:
            async with asyncio.timeout(self.row_budget):
                status, reason = await fn()
        except TimeoutError:
            status, reason = FAIL, (f"no complete answer within {self.row_budget:g}s ({ROW_TIMEOUTS} x --timeout): "
                                    "the server kept the connection open without finishing")
        except ProtocolError as exc:
            status, reason = FAIL, exc.reason
        except Exception as exc:  # an answer no reader expected must fail this row, never the run
            status, reason = FAIL, f"unexpected answer ({unexpected(exc)})"
        self.report.checks.append(Check(name, status, (time.perf_counter() - t0) * 1000, reason))
        return status != FAIL

    def skip(self, name: str, reason: str) -> None:
        self.report.checks.append(Check(name, SKIP, None, reason))


def pick_model(engine: Engine, wanted: str | None, served: list[str],
               preferred: str | None = None) -> tuple[str | None, str]:
    """The served model to use: ``wanted`` by the engine's own name matching, else ``preferred`` (e.g. one
    already loaded), else the first served."""
    if not served:
        hint = engine.missing_model_hint(wanted) if wanted else ""
        return None, "no models served" + (f"; model {wanted!r} {hint}" if hint else "")
    if wanted is None:
        if preferred in served:
            return preferred, f"serving {', '.join(served[:5])}; {preferred} already loaded"
        return served[0], f"serving {', '.join(served[:5])}"
    for s in served:
        if engine.same_model(wanted, s):
            return s, f"{wanted} served"
    hint = engine.missing_model_hint(wanted)
    return None, f"model {wanted!r} is not served; served: {', '.join(served[:5])}" + (f"; {hint}" if hint else "")


async def _ready(run: _Run, engine: Engine) -> bool:
    async def f() -> tuple[str, str]:
        served = await engine.models(run.http)
        run.report.models = served
        preferred = await engine.preferred_model(run.http, served) if run.ep.model is None and served else None
        chosen, reason = pick_model(engine, run.ep.model, served, preferred)
        run.report.model = chosen
        return (PASS if chosen else FAIL), reason
    return await run.step("readiness", f)


async def _residency(run: _Run, engine: Engine) -> None:
    """A row only for engines whose API reports where the model lives."""
    assert run.report.model is not None
    t0 = time.perf_counter()
    try:
        verdict = await engine.gpu_residency(run.http, run.report.model, expect_gpu=run.ep.expect_gpu)
    except ProtocolError as exc:
        verdict = FAIL, exc.reason
    except Exception as exc:
        verdict = FAIL, f"unexpected answer ({unexpected(exc)})"
    if verdict is not None:
        run.report.checks.append(Check("gpu_residency", verdict[0], (time.perf_counter() - t0) * 1000, verdict[1]))


async def _auth(run: _Run, engine: Engine) -> None:
    if not run.http.api_key:
        run.skip("auth", "no API key configured")
        return

    async def f() -> tuple[str, str]:
        method, path = engine.auth_probe
        body = engine.auth_body(run.report.model or run.ep.model or "healthcheck")
        status = await run.http.status_only(method, path, json_body=body, auth=False)
        if status in (401, 403):
            return PASS, f"{method} {path} without the key refused ({status})"
        if 200 <= status < 300:
            return FAIL, f"{method} {path} without the API key answered {status}: the key is not enforced"
        return FAIL, f"{method} {path} without the API key answered {status}, expected 401 or 403"
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


async def _tls(run: _Run, opts: Options) -> None:
    """For https endpoints: days left on the server certificate (a warning under ``cert_warn_days``)."""
    if not run.ep.url.startswith("https:"):
        return
    if opts.insecure:
        run.skip("tls", "--insecure: certificate not verified")
        return

    async def f() -> tuple[str, str]:
        left = await cert_expiry(run.ep.url, tls_context(opts.ca_bundle, insecure=opts.insecure), opts.timeout)
        if left is None:
            return SKIP, "no certificate details from the server"
        days = left / 86400
        when = time.strftime("%Y-%m-%d", time.gmtime(time.time() + left))
        if days < 0:
            return FAIL, f"certificate expired on {when}"
        if days < opts.cert_warn_days:
            return WARN, f"certificate expires in {days:.1f} days ({when}): renew it"
        return PASS, f"certificate valid until {when} ({days:.0f} days)"
    await run.step("tls", f)


def _valid(obj: Any, schema: dict[str, Any]) -> str | None:
    """None when ``obj`` validates against ``schema``, else the first reason (jsonschema when installed)."""
    try:
        import jsonschema
    except ImportError:  # the one fixed schema, checked by hand
        ok = isinstance(obj, dict) and isinstance(obj.get("answer"), int) and set(obj) == {"answer"}
        return None if ok else "does not match {\"answer\": integer}"
    error = jsonschema.exceptions.best_match(jsonschema.Draft202012Validator(schema).iter_errors(obj))
    return None if error is None else one_line(error.message, 120)


async def _structured_output(run: _Run, engine: Engine, opts: Options) -> None:
    if engine.structured_output is None:
        run.skip("structured_output", f"not checked for {engine.spec.title} (no JSON-schema API known here)")
        return
    assert run.report.model is not None
    model = run.report.model

    async def f() -> tuple[str, str]:
        how = f"{engine.structured_output} json_schema" if engine.structured_output == "response_format" \
            else f"{engine.structured_output} schema"
        try:
            text = await engine.structured_answer(run.http, model, STRUCTURED_SCHEMA,
                                                  max(STRUCTURED_MIN_TOKENS, opts.max_tokens))
        except ProtocolError as exc:
            if not engine.known_features and exc.status is not None and 400 <= exc.status < 500:
                return SKIP, f"{how} refused ({exc.reason}): not supported by this server"
            raise
        try:
            obj = json.loads(text)
        except ValueError:
            return FAIL, f"{how}: the answer is not JSON: {one_line(text, 60)!r}"
        problem = _valid(obj, STRUCTURED_SCHEMA)
        if problem:
            return FAIL, f"{how}: the answer does not validate ({problem}): {one_line(text, 60)!r}"
        return PASS, f"{how}: {one_line(text, 60)}"
    await run.step("structured_output", f)


async def _function(run: _Run, engine: Engine, opts: Options) -> None:
    """The engine's completion checks. When the first is refused in the way engines refuse chat for an
    embedding-only model and the embeddings API answers, the endpoint serves an embedding model: the
    generation rows are skipped and an embeddings row stands for them."""
    assert run.report.model is not None
    model = run.report.model
    steps = engine.function_steps(run.http, model, opts.max_tokens)
    (first, first_fn), rest = steps[0], steps[1:]
    refused: list[ProtocolError] = []

    async def watched() -> tuple[str, str]:
        try:
            return await first_fn()
        except ProtocolError as exc:
            refused.append(exc)
            raise
    dim = None
    if not await run.step(first, watched) and first == "completion" and refused \
            and refused[0].status in EMBEDDING_HINT_STATUS:
        t1 = time.perf_counter()
        with contextlib.suppress(Exception):  # not an embedding model either: the completion failure stands
            async with asyncio.timeout(run.row_budget):
                dim = await engine.embed(run.http, model)
    if dim is None:
        for name, fn in rest:
            await run.step(name, fn)
        if opts.capabilities:
            await _structured_output(run, engine, opts)
        return
    row = run.report.checks.pop()
    run.report.checks.append(Check(first, SKIP, row.latency_ms, f"{model} is an embedding model ({row.reason})"))
    for name, _ in rest:
        run.skip(name, "embedding model: no text generation")
    run.report.checks.append(Check("embeddings", PASS, (time.perf_counter() - t1) * 1000,
                                   f"{dim}-dimensional vector"))
    if opts.capabilities:
        run.skip("structured_output", "embedding model")


async def check_endpoint(ep: Endpoint, opts: Options, client: httpx.AsyncClient) -> Report:
    report = Report(name=ep.label, engine=ep.engine, url=ep.url, model=ep.model)
    try:
        return await _check_endpoint(ep, opts, client, report)
    except ConfigError as exc:  # validated before the run; a key file removed since then
        report.checks.append(Check("config", FAIL, None, exc.reason))
        return report
    except Exception as exc:  # one endpoint's surprise never loses the others' results
        report.checks.append(Check("internal", FAIL, None, f"unexpected answer ({unexpected(exc)})"))
        return report


async def _check_endpoint(ep: Endpoint, opts: Options, client: httpx.AsyncClient, report: Report) -> Report:
    key = read_api_key(ep.api_key_file, env=ep.api_key_env)
    http = Http(ep.url, opts.timeout, key, client)
    run = _Run(ep, http, report, opts.timeout)
    if ep.engine is None:
        found: list[tuple[Endpoint, Engine, Http]] = []

        async def det() -> tuple[str, str]:
            found.append(await engines.resolve(ep, http))
            return PASS, f"detected {found[0][1].name}"
        if not await run.step("detect", det):
            return report
        ep, engine, http = found[0]  # its own --model / --api-key-file; the label names the engine
        report.engine, report.name, report.model = engine.name, ep.label, ep.model
        run.ep, run.http = ep, http
    else:
        engine = engines.get(ep.engine)
    await _tls(run, opts)
    if not await run.step("liveness", lambda: engine.liveness(http)):
        for n in ("readiness", "completion", "stream"):
            run.skip(n, "not live")
        return report
    with contextlib.suppress(Exception):  # a version is a nicety; its absence is no failure
        async with asyncio.timeout(run.row_budget):
            report.version = await engine.version(http)
    if await _ready(run, engine):
        await _function(run, engine, opts)
        await _residency(run, engine)
    await _auth(run, engine)
    await _metrics(run, engine)
    return report


def _client(opts: Options) -> httpx.AsyncClient:
    # One small pool per endpoint: httpcore scans every pooled connection on each request, so one client
    # shared by many hosts costs O(hosts) per request. One TLS context for all (see protocols.tls_context).
    return httpx.AsyncClient(timeout=httpx.Timeout(opts.timeout), limits=httpx.Limits(max_connections=8),
                             verify=tls_context(opts.ca_bundle, insecure=opts.insecure))


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
            delay = min(backoff(attempt - 1, rng, cap=WAIT_CAP_S), left)
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
    from . import diagnose, dockerhost

    todo = [(e, r) for e, r in zip(eps, reports, strict=True) if not r.healthy and dockerhost.is_local(e.host)]
    if not todo:
        return
    results = await asyncio.gather(*(asyncio.to_thread(diagnose.for_endpoint, e.port, r.engine) for e, r in todo),
                                   return_exceptions=True)
    for (_, r), d in zip(todo, results, strict=True):
        r.diagnosis = None if isinstance(d, BaseException) else d  # a diagnosis that fails loses no verdict


# -- machine-readable outputs ------------------------------------------------------------------------
def printable(text: str) -> str:
    """Server text made safe to show: control and other non-printable characters (a terminal escape, a NUL, what
    XML 1.0 cannot hold) written as Python escapes, so a model id like ``m\\x1b[31m`` neither recolours a
    terminal nor breaks a JUnit file. JSON output keeps the text as it came (json escapes it itself)."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text)


def junit_xml(reports: list[Report]) -> str:
    """JUnit XML: one testcase per endpoint x check (a warning passes, with the reason in system-out)."""
    import xml.etree.ElementTree as ET

    cases = [(r, c) for r in reports for c in r.checks]
    suites = ET.Element("testsuites", name="healthcheck")
    suite = ET.SubElement(suites, "testsuite", name="healthcheck", tests=str(len(cases)),
                          failures=str(sum(c.status == FAIL for _, c in cases)),
                          skipped=str(sum(c.status == SKIP for _, c in cases)), errors="0",
                          time=f"{sum((c.latency_ms or 0) for _, c in cases) / 1000:.3f}")
    for r, c in cases:
        case = ET.SubElement(suite, "testcase", classname=printable(r.name), name=c.name,
                             time=f"{(c.latency_ms or 0) / 1000:.3f}")
        reason = printable(c.reason)
        if c.status == FAIL:
            ET.SubElement(case, "failure", message=reason, type="unhealthy").text = reason
        elif c.status == SKIP:
            ET.SubElement(case, "skipped", message=reason)
        else:
            ET.SubElement(case, "system-out").text = f"{c.status}: {reason}"
        props = ET.SubElement(case, "properties")
        for k, v in (("url", r.url), ("engine", r.engine or "?"), ("model", r.model or ""),
                     ("version", r.version or "")):
            ET.SubElement(props, "property", name=k, value=printable(v))
    ET.indent(suites)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(suites, encoding="unicode") + "\n"


def _label(value: str) -> str:
    # control characters first written as escapes, then the exposition format's own escaping of "\\" and '"'
    return printable(value.replace("\n", " ")).replace("\\", "\\\\").replace('"', '\\"')


def prometheus_text(reports: list[Report], now: float | None = None) -> str:
    """node-exporter textfile-collector format: up and latency per endpoint and check, up per endpoint,
    the engine's version as an info series, and when the run happened."""
    lines = [
        "# HELP gik_healthcheck_up 1 when the check passed or warned, 0 when it failed (skipped checks absent).",
        "# TYPE gik_healthcheck_up gauge",
    ]
    lat = ["# HELP gik_healthcheck_latency_seconds Time the check took.",
           "# TYPE gik_healthcheck_latency_seconds gauge"]
    ep_up = ["# HELP gik_healthcheck_endpoint_up 1 when every check of the endpoint passed or warned.",
             "# TYPE gik_healthcheck_endpoint_up gauge"]
    info = ["# HELP gik_healthcheck_engine_info The engine and version an endpoint reported.",
            "# TYPE gik_healthcheck_engine_info gauge"]
    for r in reports:
        base = f'endpoint="{_label(r.name)}",engine="{_label(r.engine or "?")}",url="{_label(r.url)}"'
        ep_up.append(f"gik_healthcheck_endpoint_up{{{base}}} {int(r.healthy)}")
        info.append(f'gik_healthcheck_engine_info{{{base},model="{_label(r.model or "")}",'
                    f'version="{_label(r.version or "")}"}} 1')
        for c in r.checks:
            labels = f'{base},check="{_label(c.name)}"'
            if c.status != SKIP:
                lines.append(f"gik_healthcheck_up{{{labels}}} {int(c.status != FAIL)}")
            if c.latency_ms is not None:
                lat.append(f"gik_healthcheck_latency_seconds{{{labels}}} {c.latency_ms / 1000:.6f}")
    stamp = ["# HELP gik_healthcheck_last_run_timestamp_seconds When this file was written.",
             "# TYPE gik_healthcheck_last_run_timestamp_seconds gauge",
             f"gik_healthcheck_last_run_timestamp_seconds {time.time() if now is None else now:.3f}"]
    return "\n".join(lines + lat + ep_up + info + stamp) + "\n"
