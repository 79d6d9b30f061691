"""``smoke-bench --html FILE``: one self-contained page a person opens (no network: figures are inline PNGs
in base64, styles inline, no scripts). Sections: the answer (sweep: the highest load within the SLOs per
engine), the side-by-side table, the distributions, the sweep curves and per-load table, GPU memory per
engine, failures and warnings, the run's settings."""

from __future__ import annotations

import base64
import datetime as dt
import html
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import report
from .bench import EndpointResult, failure_share, verdict
from .cli.common import write_whole

if TYPE_CHECKING:
    from .bench import BenchConfig

STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;margin:2em auto;max-width:1200px;color:#222}
h1{font-size:1.5em}h2{font-size:1.2em;margin-top:2em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:.5em 0;font-size:.9em}
th,td{border:1px solid #ddd;padding:.25em .6em;text-align:right}th{background:#f4f4f4}
td:first-child,th:first-child{text-align:left}.ok{color:#060}.bad{color:#a00}
img{max-width:100%;border:1px solid #eee}pre{background:#f8f8f8;padding:.8em;overflow:auto;font-size:.85em}
.note{color:#666;font-size:.9em}
"""


def _e(value: Any) -> str:
    return html.escape(str(value))


def _img(png: bytes, alt: str) -> str:
    return f'<img alt="{_e(alt)}" src="data:image/png;base64,{base64.b64encode(png).decode()}">'


def _table(head: list[str], rows: list[list[str]]) -> str:
    th = "".join(f"<th>{_e(h)}</th>" for h in head)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{th}</tr></thead><tbody>{body}</tbody></table>"


def comparison(results: list[EndpointResult]) -> str:
    head = ["metric", *[f"{r.label} ({r.engine} · {r.api})" for r in results]]
    rows = []
    for key, title, fmt in report.rows(results):
        if key == "request_goodput" and all(r.metrics.get(key) is None for r in results):
            continue
        rows.append([_e(title), *[_e(report.cell(r, key, fmt)) for r in results]])
    if any(r.kv_cache_peak_pct is not None for r in results):
        rows.append(["KV cache peak (%)", *[_e(report._fmt(r.kv_cache_peak_pct, "{:.1f}")) for r in results]])
    for k in sorted({k for r in results for k in r.engine_stats}):
        rows.append([_e(f"engine {k}"), *[_e(report._fmt(r.engine_stats.get(k), "{:.1f}")) for r in results]])
    rows.append(["model", *[_e(r.model) for r in results]])
    rows.append(["prompt tokens from", *[_e(r.tokens_from or "-") for r in results]])
    return _table(head, rows)


def gpu_section(results: list[EndpointResult]) -> str:
    """GPU memory per engine. THE PLACE for the lead's per-engine GPU figures (gpu.GpuMemory): each
    endpoint's own processes' peak per GPU beside the device's total, or the reason none was measured."""
    rows = []
    for r in results:
        m = r.gpu_memory
        if m is None and not r.gpu_peak_mib:
            rows.append([_e(r.label), "-", "-", "not sampled (--no-gpu-sampling, or no sampler)"])
            continue
        engine = m.engine_peak_mib if m else {}
        device = m.device_peak_mib if m else r.gpu_peak_mib
        gpus = sorted({*engine, *device}) or ["-"]
        for g in gpus:
            rows.append([_e(f"{r.label} GPU {g}"), _e(report._fmt(engine.get(g), "{:.0f}")),
                         _e(report._fmt(device.get(g), "{:.0f}")), _e((m.note or m.source) if m else "")])
    return _table(["endpoint", "engine peak (MiB)", "device total peak (MiB)", "note"], rows)


def sweep_section(results: list[EndpointResult], cfg: BenchConfig) -> str:
    swept = [r for r in results if r.sweep is not None]
    if not swept:
        return ""
    parts = ["<h2>Sweep: latency vs throughput</h2>",
             _img(report.save(report.sweep_figure(swept)), "latency vs throughput per engine")]
    head = ["endpoint", *[t for _, t, _ in report.SWEEP_COLUMNS]]
    rows = []
    for r in swept:
        for i, p in enumerate((r.sweep or {}).get("points") or []):
            cells = [_e(r.label if i == 0 else "")]
            for key, _, fmt in report.SWEEP_COLUMNS:
                v = p.get(key)
                if v is True or v is False:
                    cells.append(f'<span class="{"ok" if v else "bad"}">{"yes" if v else "no"}</span>')
                else:
                    cells.append(_e(report._fmt(v, fmt)))
            rows.append(cells)
    parts.append(_table(head, rows))
    return "\n".join(parts)


def verdicts(results: list[EndpointResult], cfg: BenchConfig) -> str:
    """What a person reads first: per endpoint, passed or why not, and the figures that matter most (request
    and output throughput, median and p99 TTFT, failed share); "-" where nothing completed."""
    rows = []
    for r in results:
        why = verdict(r, cfg)
        share = failure_share(r)
        state = ('<span class="ok">PASS</span>' if not why else f'<span class="bad">FAIL</span>: {_e(why)}')
        rows.append([_e(f"{r.label} ({r.engine})"), state,
                     _e(report.cell(r, "request_throughput", "{:.2f}")),
                     _e(report.cell(r, "output_throughput", "{:.1f}")),
                     _e(report.cell(r, "median_ttft_ms", "{:.0f}")), _e(report.cell(r, "p99_ttft_ms", "{:.0f}")),
                     _e(f"{r.completed} / {int(r.metrics.get('failed', 0) or 0)}"
                        + ("" if share is None else f" ({share:.0%})"))])
    rule = ("a sweep passes when a load met the SLOs" if any(r.sweep is not None for r in results) else
            f"passes when requests completed and at most {cfg.max_failure_share:.0%} failed (--max-failure-share)")
    return ("<h2>Verdict</h2>" + _table(["endpoint", "verdict", "req/s", "output tok/s", "TTFT median (ms)",
                                         "TTFT p99 (ms)", "completed / failed"], rows)
            + f"<p class='note'>{_e(rule)}</p>")


def page(results: list[EndpointResult], cfg: BenchConfig) -> str:
    when = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>smoke-bench report</title>"
             f"<style>{STYLE}</style></head><body>",
             f"<h1>smoke-bench: {len(results)} endpoint(s)</h1><p class='note'>{_e(when)}; metrics as "
             "<code>vllm bench serve</code> defines them</p>"]
    stopped_by = next((r.interrupted for r in results if r.interrupted), "")
    if stopped_by:
        parts.append(f"<p class='bad'><b>Interrupted by {_e(stopped_by)}</b>: the figures are what completed "
                     "before it; requests in flight were cancelled and are not counted.</p>")
    parts.append(verdicts(results, cfg))
    if any(r.sweep is not None for r in results):
        lines = report.sweep_summary(results, cfg.goodput, (results[0].sweep or {}).get("attainment_required", 0.9))
        parts.append("<h2>How many users can this box serve?</h2><ul>"
                     + "".join(f"<li>{_e(x)}</li>" for x in lines) + "</ul>")
    parts.append("<h2>Side by side</h2>")
    parts.append(comparison(results))
    if any(q.success for r in results for q in r.requests):
        parts.append("<h2>Distributions</h2>")
        parts.append(_img(report.save(report.distributions_figure(results)), "TTFT, ITL, E2EL distributions"))
    parts.append(sweep_section(results, cfg))
    parts.append("<h2>GPU memory per engine</h2>")
    parts.append(gpu_section(results))
    problems = []
    for r in results:
        if r.setup_error:
            problems.append(f"{r.label}: {r.setup_error}")
        problems += [f"{r.label}: {n} failed: {reason}" for reason, n in r.errors.items() if reason != r.setup_error]
        problems += [f"{r.label}: warning: {n} x {reason}" for reason, n in r.warnings.items()]
    if problems:
        parts.append("<h2>Failures and warnings</h2><ul>" + "".join(f"<li>{_e(p)}</li>" for p in problems) + "</ul>")
    parts.append("<h2>Settings</h2><pre>" + _e(json.dumps(cfg.settings(), indent=2, default=str)) + "</pre>")
    parts.append("<h2>Endpoints</h2>" + _table(
        ["endpoint", "engine", "url", "model", "api"],
        [[_e(r.label), _e(r.engine), _e(r.url), _e(r.model), _e(r.api)] for r in results]))
    parts.append("</body></html>")
    return "\n".join(p for p in parts if p)


def write_html(results: list[EndpointResult], cfg: BenchConfig, path: str) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    write_whole(path, page(results, cfg))
