"""One report for the whole lab: every host x engine from the per-host result folders the deployers fetch
(``<results>/<host>/healthcheck.json``, ``bench.json``, ``bench.html``, ``host.json``) to one static page (no
scripts, no external assets: it opens from ``file://``), one JSON document and JUnit XML (one testcase per
host x engine).

Pure: folders in, text out (:func:`collect`, :func:`to_json`, :func:`page`, :func:`junit_xml`); only
:func:`write` touches the disk. A host whose files are missing or unreadable still appears, with why; one host's
bad file never loses another host's result. A field of the wrong JSON type (a list that is a number, an object that
is a string), NaN/Infinity, a lone surrogate: a line of that host's problems naming the file and the field (and the
engine's note where it is one engine's), never an exception (tests/unit/test_lab_report_inputs.py).

What each per-host file contributes:

- ``healthcheck.json`` (``healthcheck --json``): per endpoint healthy or the first failing check, the engine's
  version, the ``gpu_residency`` row (GPU-resident or why not); a gateway endpoint (engine ``gateway``,
  healthchecks/engines/gateway.py) gives the gateway's routes: its ``route <model>`` and
  ``upstream <model> <host:port>`` rows.
- ``bench.json`` (``smoke-bench --json``, ``gpu-report --bench-json``): per endpoint the engine's own peak GPU
  memory per GPU, and where a sweep ran, the highest load within the SLOs (capacity).
- ``host.json`` (written by the deployer: roles/verify; every field optional): ``verified`` (false: verify did
  not run, ``why`` says why, e.g. reboot pending), ``why`` (verify ran but has no healthcheck results: e.g.
  healthcheck exited 2), ``driver_version``, ``gpus`` (names), ``reboot_pending``, ``failures`` (verify's later
  steps that failed: smoke-bench, gpu-report), ``time`` (ISO 8601 UTC), ``engines``, ``healthcheck_rc``,
  ``smoke_bench_rc``.
"""

from __future__ import annotations

import datetime as dt
import html
import json
import math
import os
import xml.etree.ElementTree as ET
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .errors import ConfigError
from .verdicts import FAIL, PASS, SKIP, WARN

HOST_FILES = ("host.json", "healthcheck.json", "bench.json")
GATEWAY_ENGINES = frozenset({"gateway", "litellm"})  # the catalogue's gateway engine (LiteLLM's proxy)
ROUTE_PREFIXES = ("route", "upstream")
OUTPUTS = {"html": "lab.html", "json": "lab.json", "junit": "lab-junit.xml"}

# a host's state, worst first (the page sorts and colours by it)
UNHEALTHY, NO_RESULTS, NOT_VERIFIED, HEALTHY = "unhealthy", "no results", "not verified", "healthy"


@dataclass
class EngineRow:
    """One host x engine (one endpoint of ``healthcheck --json``)."""

    name: str  # the endpoint's label in healthcheck and smoke-bench (e.g. vllm@10.0.0.1:8000)
    engine: str
    url: str
    model: str
    healthy: bool
    why: str = ""  # the failing checks, "check: reason; ..." ("" when healthy)
    warnings: str = ""  # warn rows, "check: reason; ..."
    version: str = ""  # the engine's own version string, when its API reports one
    gpu: str = ""  # pass / fail / warn / skip of the gpu_residency row; "" when no row was due
    gpu_reason: str = ""
    gpu_peak_mib: dict[str, float] = field(default_factory=dict)  # the engine's own processes, per GPU
    gpu_note: str = ""  # why no figure, when bench.json says so
    capacity: dict[str, Any] | None = None  # the sweep's best load within the SLOs
    capacity_note: str = ""  # "no sweep" / "no load met the SLOs" / ...
    title: str = ""  # what the report calls it: the engine, or the label where a host runs the engine twice

    @property
    def state(self) -> str:
        return HEALTHY if self.healthy else UNHEALTHY


@dataclass
class Route:
    """One row of a gateway's healthcheck about its routes: ``route <model>`` (a real completion through it) or
    ``upstream <model> <host:port>`` (that upstream's state as the gateway reports it)."""

    gateway: str  # "<host>/<endpoint>"
    kind: str  # route / upstream / upstreams
    route: str  # the model name clients ask for
    upstream: str  # host:port of the upstream ("" for a route row)
    status: str
    reason: str


@dataclass
class HostResult:
    name: str
    state: str = NO_RESULTS
    why: str = ""  # why not healthy / not verified / no results
    driver_version: str = ""
    gpus: list[str] = field(default_factory=list)
    reboot_pending: bool | None = None  # None: not known (no host.json)
    time: str = ""  # when the results were written (host.json's, else healthcheck.json's modification time)
    links: dict[str, str] = field(default_factory=dict)  # title -> path relative to the results folder
    problems: list[str] = field(default_factory=list)  # files that could not be read, and why
    engines: list[EngineRow] = field(default_factory=list)


@dataclass
class LabReport:
    results: str
    generated: str
    hosts: list[HostResult]
    routes: list[Route]
    gateways: list[str]  # "<host>/<endpoint>" of every gateway endpoint found

    @property
    def healthy(self) -> bool:
        return all(h.state in (HEALTHY, NOT_VERIFIED) for h in self.hosts) and bool(self.hosts)


# -- reading ------------------------------------------------------------------------------------------------------
def _read_json(path: Path, problems: list[str]) -> dict[str, Any] | None:
    """The JSON object in ``path``; None when absent; a line in ``problems`` when it cannot be used."""
    if not path.is_file():
        return None
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        # a lone surrogate ("\\ud800" is valid JSON) cannot be written as UTF-8 (the page, the console): "?"
        doc = json.loads(json.dumps(doc, ensure_ascii=False).encode("utf-8", "replace").decode("utf-8"))
    except OSError as exc:
        problems.append(f"{path.name}: cannot be read: {exc.strerror or exc}")
        return None
    except (UnicodeDecodeError, ValueError) as exc:
        problems.append(f"{path.name}: not JSON ({(str(exc).splitlines() or [''])[0][:120]})")
        return None
    except RecursionError:
        problems.append(f"{path.name}: not JSON (nested too deeply)")
        return None
    if not isinstance(doc, dict):
        problems.append(f"{path.name}: not a JSON object")
        return None
    return doc


def _list(doc: dict[str, Any], key: str, where: str, problems: list[str]) -> list[Any]:
    """``doc[key]`` when it is a list; [] when absent or null; [] and a line in ``problems`` when it is not a list."""
    v = doc.get(key)
    if v is None:
        return []
    if not isinstance(v, list):
        problems.append(f"{where}: {key} is not a list ({type(v).__name__})")
        return []
    return v


def _dict(doc: dict[str, Any], key: str, where: str, problems: list[str]) -> dict[str, Any] | None:
    """``doc[key]`` when it is an object; None when absent or null; None and a line in ``problems`` otherwise."""
    v = doc.get(key)
    if v is None:
        return None
    if not isinstance(v, dict):
        problems.append(f"{where}: {key} is not an object ({type(v).__name__})")
        return None
    return v


def _text(v: Any) -> str:
    return "" if v is None else str(v)


def _mtime(path: Path) -> str:
    try:
        t = path.stat().st_mtime
    except OSError:
        return ""
    return dt.datetime.fromtimestamp(t, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _number(v: Any) -> float | None:
    """A finite number, else None (JSON's NaN/Infinity, which Python reads, would make lab.json invalid)."""
    if isinstance(v, bool) or not isinstance(v, int | float):
        return None
    try:
        f = float(v)
    except OverflowError:  # an int too large for a float
        return None
    return f if math.isfinite(f) else None


def _engine_row(ep: dict[str, Any], problems: list[str] | None = None) -> EngineRow:
    bad: list[str] = []
    where = f"healthcheck.json: endpoint {_text(ep.get('name')) or '?'}"
    checks = [c for c in _list(ep, "checks", where, bad) if isinstance(c, dict)]
    fails = [c for c in checks if c.get("status") == FAIL]
    healthy = bool(checks) and not fails
    if isinstance(ep.get("healthy"), bool):
        healthy = healthy and ep["healthy"]
    why = "; ".join(f"{_text(c.get('name'))}: {_text(c.get('reason'))}" for c in fails)
    if not healthy and not why:
        why = "; ".join(bad) if bad else "no checks ran" if not checks else "reported unhealthy"
    if problems is not None:
        problems += bad
    res = next((c for c in checks if c.get("name") == "gpu_residency"), None)
    return EngineRow(
        name=_text(ep.get("name")) or "?", engine=_text(ep.get("engine")) or "?", url=_text(ep.get("url")),
        model=_text(ep.get("model")), healthy=healthy, why=why,
        warnings="; ".join(f"{_text(c.get('name'))}: {_text(c.get('reason'))}" for c in checks
                           if c.get("status") == WARN),
        version=_text(ep.get("version")),
        gpu=_text(res.get("status")) if res else "", gpu_reason=_text(res.get("reason")) if res else "")


def _routes(host: str, ep: dict[str, Any]) -> list[Route]:
    gw = f"{host}/{_text(ep.get('name'))}"
    out: list[Route] = []
    checks = ep.get("checks")
    for c in checks if isinstance(checks, list) else []:
        name = _text(c.get("name")) if isinstance(c, dict) else ""
        if not name.startswith(ROUTE_PREFIXES):
            continue
        kind, _, rest = name.partition(" ")
        route, _, upstream = rest.rpartition(" ") if kind == "upstream" and " " in rest else (rest, "", "")
        out.append(Route(gw, kind, route, upstream, _text(c.get("status")), _text(c.get("reason"))))
    return out


def _bench_figures(bench: dict[str, Any], rows: list[EngineRow], problems: list[str]) -> None:
    """GPU memory and capacity from smoke-bench's JSON, matched to the healthcheck rows by endpoint label. A field
    of the wrong type is a line in ``problems`` and, where it is one endpoint's, that engine's note says so."""
    by_label = {r.name: r for r in rows}
    for i, ep in enumerate(_list(bench, "endpoints", "bench.json", problems)):
        if not isinstance(ep, dict):
            problems.append(f"bench.json: endpoint {i + 1} is not an object")
            continue
        row = by_label.get(_text(ep.get("label")))
        if row is None:
            continue
        where = f"bench.json: {row.name}"
        bad: list[str] = []
        mem = _dict(ep, "gpu_memory", where, bad)
        if mem is not None:
            peaks = _dict(mem, "engine_peak_mib", f"{where}: gpu_memory", bad)
            if peaks is not None:
                row.gpu_peak_mib = {_text(k): f for k, v in peaks.items() if (f := _number(v)) is not None}
            row.gpu_note = _text(mem.get("note"))
        if bad and not row.gpu_peak_mib:
            row.gpu_note = "; ".join(bad)
        sweep = _dict(ep, "sweep", where, bad)
        problems += bad
        if sweep is None:
            row.capacity_note = "no sweep" if ep.get("sweep") is None else f"{where}: sweep is not an object"
            continue
        best = sweep.get("best")
        if isinstance(best, dict):
            slo = {_text(k): f for k, v in (_dict(sweep, "slo", f"{where}: sweep", problems) or {}).items()
                   if (f := _number(v)) is not None}
            row.capacity = {"request_throughput": _number(best.get("request_throughput")),
                            "users": _number(best.get("users")),
                            "output_throughput": _number(best.get("output_throughput")),
                            "load": _text(best.get("offered")), "slo": slo,
                            "attainment_required": _number(sweep.get("attainment_required")),
                            "at_least": bool(sweep.get("highest_load_met"))}
        elif best is None:
            row.capacity_note = "no load met the SLOs"
        else:
            row.capacity_note = f"{where}: sweep best is not an object"
            problems.append(row.capacity_note)


def read_host(folder: Path) -> tuple[HostResult, list[Route], list[str]]:
    """One host's result folder -> its result, its gateway routes, and its gateway endpoints."""
    h = HostResult(name=folder.name)
    meta = _read_json(folder / "host.json", h.problems) or {}
    hc = _read_json(folder / "healthcheck.json", h.problems)
    bench = _read_json(folder / "bench.json", h.problems)
    h.driver_version = _text(meta.get("driver_version"))
    h.gpus = [_text(g) for g in _list(meta, "gpus", "host.json", h.problems) if g]
    if isinstance(meta.get("reboot_pending"), bool):
        h.reboot_pending = meta["reboot_pending"]
    elif meta.get("reboot_pending") is not None:
        h.problems.append(f"host.json: reboot_pending is not true or false "
                          f"({type(meta['reboot_pending']).__name__})")
    h.time = _text(meta.get("time")) or _mtime(folder / "healthcheck.json")
    for title, name in (("page", "bench.html"), ("healthcheck", "healthcheck.json"), ("benchmark", "bench.json"),
                        ("host", "host.json")):
        if (folder / name).is_file():
            h.links[title] = f"{folder.name}/{name}"
    routes: list[Route] = []
    gateways: list[str] = []
    endpoints = hc.get("endpoints") if hc is not None else None
    if isinstance(endpoints, list):
        eps = [e for e in endpoints if isinstance(e, dict)]
        if len(eps) < len(endpoints):
            h.problems.append(f"healthcheck.json: {len(endpoints) - len(eps)} endpoint(s) not an object")
        h.engines = [_engine_row(e, h.problems) for e in eps]
        for row in h.engines:
            row.title = row.engine if [r.engine for r in h.engines].count(row.engine) == 1 else row.name
        for e, row in zip(eps, h.engines, strict=True):
            if row.engine in GATEWAY_ENGINES:
                gateways.append(f"{h.name}/{row.name}")
                routes += _routes(h.name, e)
        if bench is not None:
            _bench_figures(bench, h.engines, h.problems)
        if not h.engines:
            h.state, h.why = UNHEALTHY, "healthcheck.json lists no endpoint"
        elif all(r.healthy for r in h.engines):
            h.state = HEALTHY
        else:
            h.state = UNHEALTHY
            h.why = "; ".join(f"{r.title}: {r.why}" for r in h.engines if not r.healthy)
    elif hc is not None:
        h.problems.append("healthcheck.json: no endpoints list")
    failures = [_text(f) for f in _list(meta, "failures", "host.json", h.problems) if f]
    if failures and h.state in (HEALTHY, UNHEALTHY):  # verify's own steps after healthcheck (benchmark, GPU memory)
        h.state, h.why = UNHEALTHY, "; ".join([x for x in (h.why,) if x] + failures)
    if h.state == NO_RESULTS:
        if meta.get("verified") is False:
            h.state = NOT_VERIFIED
            h.why = _text(meta.get("why")) or "verify did not run"
        elif meta.get("why"):
            h.state, h.why = UNHEALTHY, _text(meta.get("why"))
        else:
            h.why = ("; ".join(h.problems) if h.problems else
                     "no healthcheck results: the host failed or was unreachable before verify, or was not reached")
    return h, routes, gateways


def collect(results: Path, *, hosts: list[str] | None = None, failed: dict[str, str] | None = None,
            now: dt.datetime | None = None) -> LabReport:
    """Every host's results under ``results``: each sub-folder holding a host file, and every name in ``hosts``
    (a host named there without a folder: no results). ``failed`` maps a host to why the deploy failed on it
    (it shows where the host has no results of its own, and beside them where it has)."""
    names = {p.name for p in results.iterdir() if p.is_dir() and any((p / f).is_file() for f in HOST_FILES)}
    names |= set(hosts or ())
    names |= set(failed or ())
    out, routes, gateways = [], [], []
    for name in sorted(names):
        h, r, g = read_host(results / name)
        why = (failed or {}).get(name)
        if why:  # the deployer's word first; the host's own results (if any) stay beside it
            h.why = why if h.state == NO_RESULTS else f"{why}" + (f"; {h.why}" if h.why else "")
            h.state = UNHEALTHY
        out.append(h)
        routes += r
        gateways += g
    when = (now or dt.datetime.now(dt.UTC)).strftime("%Y-%m-%d %H:%M UTC")
    return LabReport(results=str(results), generated=when, hosts=out, routes=routes, gateways=gateways)


# -- JSON -------------------------------------------------------------------------------------------------------
def to_json(rep: LabReport) -> dict[str, Any]:
    from . import __version__

    rows = [r for h in rep.hosts for r in h.engines]
    return {
        "tool": f"lab-report {__version__}", "generated": rep.generated, "healthy": rep.healthy,
        "summary": {"hosts": len(rep.hosts), "hosts_healthy": sum(h.state == HEALTHY for h in rep.hosts),
                    "engines": len(rows), "engines_healthy": sum(r.healthy for r in rows)},
        "hosts": [{**{k: v for k, v in asdict(h).items() if k != "engines"},
                   "engines": [{**asdict(r), "state": r.state} for r in h.engines]} for h in rep.hosts],
        "gateway": ({"endpoints": rep.gateways, "routes": [asdict(r) for r in rep.routes]}
                    if rep.gateways else None),
    }


# -- JUnit ------------------------------------------------------------------------------------------------------
def _xml(text: str) -> str:
    """Text XML 1.0 can hold (control characters written as escapes)."""
    return "".join(c if c.isprintable() or c in "\t\n" else c.encode("unicode_escape").decode("ascii")
                   for c in text)


def junit_xml(rep: LabReport) -> str:
    """One testcase per host x engine (classname the host, name the engine, or the endpoint label where a host
    runs an engine twice): a failure for an unhealthy one. A host without engine results is one testcase
    ``verify``: a failure (no results, failed) or skipped (not verified, e.g. reboot pending); so is a host whose
    engines passed but a later step of verify failed (the benchmark, GPU memory)."""
    cases: list[tuple[str, str, str, str]] = []  # host, name, status, message
    for h in rep.hosts:
        if not h.engines:
            cases.append((h.name, "verify", SKIP if h.state == NOT_VERIFIED else FAIL, f"{h.state}: {h.why}"))
        elif h.state == UNHEALTHY and all(r.healthy for r in h.engines):  # a later step of verify failed
            cases.append((h.name, "verify", FAIL, h.why))
        for r in h.engines:
            cases.append((h.name, r.title, PASS if r.healthy else FAIL,
                          r.why if not r.healthy else f"{r.engine} {r.version}".strip()))
    suites = ET.Element("testsuites", name="lab-report")
    suite = ET.SubElement(suites, "testsuite", name="lab", tests=str(len(cases)),
                          failures=str(sum(c[2] == FAIL for c in cases)),
                          skipped=str(sum(c[2] == SKIP for c in cases)), errors="0", time="0")
    for host, name, status, message in cases:
        case = ET.SubElement(suite, "testcase", classname=_xml(host), name=_xml(name), time="0")
        if status == FAIL:
            ET.SubElement(case, "failure", message=_xml(message), type="unhealthy").text = _xml(message)
        elif status == SKIP:
            ET.SubElement(case, "skipped", message=_xml(message))
        else:
            ET.SubElement(case, "system-out").text = _xml(message)
    ET.indent(suites)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(suites, encoding="unicode") + "\n"


# -- HTML -------------------------------------------------------------------------------------------------------
STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;margin:2em auto;max-width:1300px;color:#222;
padding:0 1em}
h1{font-size:1.5em}h2{font-size:1.2em;margin-top:2em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:.5em 0;font-size:.9em;width:100%}
th,td{border:1px solid #ddd;padding:.3em .6em;text-align:left;vertical-align:top}th{background:#f4f4f4}
td.num{text-align:right}.ok{color:#060;font-weight:bold}.bad{color:#a00;font-weight:bold}
.warn{color:#a60;font-weight:bold}.dim{color:#777}
tr.unhealthy,tr.no-results{background:#fdecec}tr.not-verified{background:#fff6e0}
.note{color:#666;font-size:.9em}.summary{font-size:1.1em}
"""

STATE_CLASS = {HEALTHY: "ok", UNHEALTHY: "bad", NO_RESULTS: "bad", NOT_VERIFIED: "warn"}


def _e(v: Any) -> str:
    return html.escape(_text(v))


def _state(state: str) -> str:
    return f'<span class="{STATE_CLASS.get(state, "dim")}">{_e(state.upper())}</span>'


def _href(results: Path, out_dir: Path, rel: str) -> str:
    """A link from the page (in ``out_dir``) to a file of the results folder, relative (works from file://)."""
    target = os.path.relpath(results / rel, out_dir)
    return html.escape(Path(target).as_posix(), quote=True)


def _mib(peaks: dict[str, float]) -> str:
    return ", ".join(f"GPU {g}: {v:.0f} MiB" for g, v in sorted(peaks.items()))


def _gpu_cell(r: EngineRow) -> str:
    status = {PASS: ("ok", "GPU-resident"), FAIL: ("bad", "NOT on the GPU"), WARN: ("warn", "unknown"),
              SKIP: ("dim", "not checked")}.get(r.gpu, ("dim", "no residency check"))
    parts = [f'<span class="{status[0]}">{_e(status[1])}</span>']
    if r.gpu_reason:
        parts.append(f'<br><span class="note">{_e(r.gpu_reason)}</span>')
    return "".join(parts)


def _memory_cell(r: EngineRow) -> str:
    if r.gpu_peak_mib:
        return _e(_mib(r.gpu_peak_mib))
    return f'<span class="dim">{_e(r.gpu_note or "not measured")}</span>'


def capacity_text(r: EngineRow) -> str:
    c = r.capacity
    if not c:
        return r.capacity_note or "no sweep"
    slo = " ".join(f"{k}<={v:g}ms" for k, v in (c.get("slo") or {}).items() if _number(v) is not None)
    att = c.get("attainment_required")
    return (f"{'at least ' if c.get('at_least') else ''}{(c.get('request_throughput') or 0):.2f} req/s, about "
            f"{(c.get('users') or 0):.1f} users, {(c.get('output_throughput') or 0):.1f} output tok/s"
            + (f" within {slo}" if slo else "") + (f" ({att:.0%} of requests)" if att is not None else ""))


def _table(head: list[str], rows: list[tuple[str, list[str]]], cls: str = "") -> str:
    th = "".join(f"<th>{_e(h)}</th>" for h in head)
    body = "".join(f'<tr class="{rc}">' + "".join(f"<td>{c}</td>" for c in cells) + "</tr>" for rc, cells in rows)
    return f'<table class="{cls}"><thead><tr>{th}</tr></thead><tbody>{body}</tbody></table>'


def _slug(state: str) -> str:
    return state.replace(" ", "-")


def page(rep: LabReport, out_dir: Path | None = None) -> str:
    """The lab's page: static HTML, inline style, no scripts, links relative to ``out_dir`` (where the page is
    written; the results folder by default)."""
    results = Path(rep.results)
    out = out_dir or results
    rows = [r for h in rep.hosts for r in h.engines]
    bad_hosts = [h for h in rep.hosts if h.state in (UNHEALTHY, NO_RESULTS)]
    verdict = ('<span class="ok">HEALTHY</span>' if rep.healthy else '<span class="bad">UNHEALTHY</span>')
    parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'><title>GPU inference lab report</title>"
        f"<style>{STYLE}</style></head><body>",
        f"<h1>GPU inference lab: {verdict}</h1>",
        f"<p class='summary' id='summary'>{len(rep.hosts)} host(s), "
        f"{sum(h.state == HEALTHY for h in rep.hosts)} healthy, {len(bad_hosts)} unhealthy or without results, "
        f"{sum(h.state == NOT_VERIFIED for h in rep.hosts)} not verified; {len(rows)} engine(s), "
        f"{sum(r.healthy for r in rows)} healthy.</p>",
        f"<p class='note'>Generated {_e(rep.generated)} from {_e(rep.results)}.</p>",
        "<h2>Hosts &times; engines</h2>",
    ]
    table: list[tuple[str, list[str]]] = []
    for h in rep.hosts:
        link = (f'<br><a href="{_href(results, out, h.links["page"])}">host report</a>' if "page" in h.links else "")
        if not h.engines:
            table.append((f"verdict {_slug(h.state)}", [f"<b>{_e(h.name)}</b>{link}", "-", _state(h.state) +
                          f"<br>{_e(h.why)}", "-", "-", "-", "-"]))
        for r in h.engines:
            why = _e(r.why) if not r.healthy else (f'<span class="note">{_e(r.warnings)}</span>' if r.warnings else "")
            table.append((f"verdict {_slug(r.state)}", [
                f"<b>{_e(h.name)}</b>{link}", f"{_e(r.title)}<br><span class='note'>"
                f"{_e(' '.join(x for x in (r.engine if r.engine != r.title else '', r.version) if x))}</span>",
                _state(r.state) + (f"<br>{why}" if why else ""),
                _gpu_cell(r), _memory_cell(r), _e(capacity_text(r)),
                f"{_e(r.model)}<br><span class='note'>{_e(r.url)}</span>"]))
    parts.append(_table(["host", "engine", "healthy or why not", "GPU", "GPU memory (engine peak)",
                         "capacity at the SLO", "model / URL"], table, "verdicts"))

    parts.append("<h2>Hosts</h2>")
    host_rows: list[tuple[str, list[str]]] = []
    for h in rep.hosts:
        links = " &middot; ".join(f'<a href="{_href(results, out, rel)}">{_e(title)}</a>'
                                  for title, rel in h.links.items()) or '<span class="dim">none</span>'
        reboot = ("-" if h.reboot_pending is None else
                  '<span class="warn">yes</span>' if h.reboot_pending else "no")
        host_rows.append((f"host {_slug(h.state)}", [
            f"<b>{_e(h.name)}</b>", _state(h.state) + (f"<br>{_e(h.why)}" if h.why else ""),
            _e(h.driver_version or "-") + (f"<br><span class='note'>{_e(', '.join(h.gpus))}</span>" if h.gpus else ""),
            reboot, _e(h.time.replace("T", " ").replace("Z", " UTC") or "-"), links
            + (f"<br><span class='bad'>{_e('; '.join(h.problems))}</span>" if h.problems else "")]))
    parts.append(_table(["host", "state", "NVIDIA driver", "reboot pending", "results from", "its own reports"],
                        host_rows, "hosts"))

    parts.append("<h2>Gateway routes</h2>")
    if not rep.gateways:
        parts.append("<p id='gateway' class='dim'>no gateway</p>")
    elif not rep.routes:
        parts.append(f"<p id='gateway'>gateway {_e(', '.join(rep.gateways))}: no routes reported</p>")
    else:
        cls = {PASS: "ok", FAIL: "bad", WARN: "warn"}
        parts.append(_table(["gateway", "model", "check", "upstream", "state", "detail"], [
            (f"route {_e(r.status)}", [_e(r.gateway), _e(r.route), _e(r.kind), _e(r.upstream or "-"),
                                       f'<span class="{cls.get(r.status, "dim")}">{_e(r.status or "?")}</span>',
                                       _e(r.reason)]) for r in rep.routes], "routes"))
    parts.append("<p class='note'>Healthy: every check of <code>healthcheck</code> passed (a warning passes); "
                 "GPU-resident: the engine's own processes hold GPU memory (a CPU fallback answering 200 is a "
                 "failure on GPU hosts). Capacity: the highest load of a <code>smoke-bench --sweep</code> run "
                 "within its SLOs, where one ran on that host.</p>")
    parts.append("</body></html>")
    return "\n".join(parts)


# -- writing ----------------------------------------------------------------------------------------------------
def write(rep: LabReport, outputs: dict[str, tuple[str, Path]]) -> None:
    """Write the outputs named in ``outputs`` (``html``/``json``/``junit`` -> (flag, path)), each whole (never half
    a file). Raises ConfigError naming the flag and the file that cannot be written; the others are written."""
    from .cli.common import write_whole

    texts = {"json": lambda: json.dumps(to_json(rep), indent=2, allow_nan=False, default=str) + "\n",
             "junit": lambda: junit_xml(rep), "html": lambda: page(rep, outputs["html"][1].parent)}
    failed = []
    for kind, (flag, path) in outputs.items():
        try:
            write_whole(path, texts[kind]())
        except OSError as exc:
            failed.append(f"{flag} {path}: cannot write: {exc.strerror or exc}")
    if failed:
        raise ConfigError("; ".join(failed))
