"""``smoke-bench --html FILE``: one self-contained page a person opens (no network: figures are inline PNGs
in base64 and inline SVG, styles inline, no scripts). Sections: the verdict (over every run with
``--num-runs``), the answer (sweep: the highest load within the SLOs per engine), the spread over the runs, the
side-by-side table, the server during the run (its own figures over time with the GPU memory samples), the
distributions, the sweep curves and per-load table, GPU memory per engine, failures and warnings, the run's
settings."""

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
    rows += [[_e(title), *[_e(c) for c in cells]] for title, cells in report.server_rows(results)]
    for k in sorted({k for r in results for k in r.engine_stats}):
        rows.append([_e(f"engine {k}"), *[_e(report._fmt(r.engine_stats.get(k), "{:.1f}")) for r in results]])
    rows.append(["model", *[_e(r.model) for r in results]])
    rows.append(["prompt tokens from", *[_e(r.tokens_from or "-") for r in results]])
    return _table(head, rows)


COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#17becf", "#7f7f7f")
Line = tuple[str, str, list[tuple[float, float]], bool]  # label, colour, (t, value) points, dashed


def svg_chart(title: str, unit: str, lines: list[Line], width: int = 560, height: int = 190) -> str:
    """A small line chart as inline SVG (no script, no external reference): value over seconds since the
    run's start, one polyline per series, a legend below."""
    left, right, top, bottom = 52, 12, 22, 30
    pts = [p for _, _, ps, _ in lines for p in ps]
    tmax = max((t for t, _ in pts), default=1.0) or 1.0
    vmax = max((v for _, v in pts), default=1.0) or 1.0
    vmax *= 1.05
    w, h = width - left - right, height - top - bottom

    def xy(t: float, v: float) -> str:
        return f"{left + w * t / tmax:.1f},{top + h - h * v / vmax:.1f}"

    legend_h = 16 * len(lines)
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height + legend_h}" '
             f'role="img" aria-label="{_e(title)}" class="chart">',
             f"<title>{_e(title)}</title>",
             f'<text x="{left}" y="14" font-size="12" font-weight="bold">{_e(title)}'
             f'{" (" + _e(unit) + ")" if unit else ""}</text>',
             f'<line x1="{left}" y1="{top + h}" x2="{left + w}" y2="{top + h}" stroke="#888"/>',
             f'<line x1="{left}" y1="{top}" x2="{left}" y2="{top + h}" stroke="#888"/>',
             f'<text x="{left - 4}" y="{top + 4}" font-size="10" text-anchor="end">{vmax / 1.05:.3g}</text>',
             f'<text x="{left - 4}" y="{top + h}" font-size="10" text-anchor="end">0</text>',
             f'<text x="{left}" y="{top + h + 14}" font-size="10">0 s</text>',
             f'<text x="{left + w}" y="{top + h + 14}" font-size="10" text-anchor="end">{tmax:.1f} s</text>']
    for i, (label, colour, ps, dashed) in enumerate(lines):
        dash = ' stroke-dasharray="5,3"' if dashed else ""
        if len(ps) == 1:
            x, y = xy(*ps[0]).split(",")
            parts.append(f'<circle cx="{x}" cy="{y}" r="3" fill="{colour}"/>')
        elif ps:
            parts.append(f'<polyline fill="none" stroke="{colour}" stroke-width="1.5"{dash} '
                         f'points="{" ".join(xy(t, v) for t, v in ps)}"/>')
        y0 = height + 16 * i + 4
        parts.append(f'<line x1="{left}" y1="{y0 - 4}" x2="{left + 18}" y2="{y0 - 4}" stroke="{colour}" '
                     f'stroke-width="2"{dash}/><text x="{left + 24}" y="{y0}" font-size="11">{_e(label)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def server_section(results: list[EndpointResult]) -> str:
    """The server during the run: one chart per figure the engines report (each endpoint a line, seconds since
    its timed run started) and one of GPU memory (each endpoint's own processes, solid; the device's total,
    dashed), from the same run; where an engine has no metrics endpoint (Ollama) or scraping was off, says so."""
    watched = [r for r in results if r.server_metrics]
    if not watched:
        return ""
    colour = {r.label: COLOURS[i % len(COLOURS)] for i, r in enumerate(results)}
    charts: dict[str, tuple[str, str, list[Line]]] = {}
    for r in watched:
        sm_ = r.server_metrics or {}
        for key, m in (sm_.get("metrics") or {}).items():
            ps = [(float(x["t"]), float(x[key])) for x in sm_.get("samples") or []
                  if isinstance(x.get(key), int | float)]
            if ps:
                title, unit = m["title"], m.get("unit", "")
                charts.setdefault(key, (title, unit, []))[2].append((r.label, colour[r.label], ps, False))
    gpu_lines: list[Line] = []
    for r in watched:
        samples = (r.server_metrics or {}).get("gpu_samples") or []
        for g in sorted({g for x in samples for g in (*x["engine_mib"], *x["device_mib"])}):
            eng = [(float(x["t"]), float(x["engine_mib"].get(g, 0.0))) for x in samples]
            dev = [(float(x["t"]), float(x["device_mib"][g])) for x in samples if g in x["device_mib"]]
            gpu_lines.append((f"{r.label} GPU {g}: engine", colour[r.label], eng, False))
            if dev:
                gpu_lines.append((f"{r.label} GPU {g}: device total", colour[r.label], dev, True))
    parts = ["<h2>The server during the run</h2>",
             "<p class='note'>The engine's own figures, scraped every --scrape-interval seconds while the timed run "
             "went on, and the GPU memory samples; time in seconds since each endpoint's run started.</p><ul>"]
    for r in watched:
        sm_ = r.server_metrics or {}
        parts.append(f"<li>{_e(r.label)} ({_e(r.engine)}): {_e(sm_.get('note') or sm_.get('source') or '-')}</li>")
    parts.append("</ul>")
    for title, unit, lines in charts.values():
        parts.append(svg_chart(title, unit, lines))
    if gpu_lines:
        parts.append(svg_chart("GPU memory", "MiB", gpu_lines))
    else:
        parts.append("<p class='note'>No GPU memory samples (no GPU seen here, another host, or "
                     "--no-gpu-sampling).</p>")
    return "\n".join(parts)


def spread_section(runs: list[list[EndpointResult]]) -> str:
    """``--num-runs``: each headline figure's min / median / max per endpoint over the complete runs."""
    sp = report.spread(runs)
    labels = list(sp)
    full = len(report.complete_runs(runs))
    rows = [[_e(title), *[_e(report.spread_cell(sp[label].get(key), fmt)) for label in labels]]
            for key, title, fmt in report.spread_titles(runs) if any(key in sp[label] for label in labels)]
    return (f"<h2>Spread over {full} complete run(s) of {len(runs)}</h2>"
            "<p class='note'>min / median / max of each run's figure (the same prompts and arrivals every run)</p>"
            + _table(["metric", *labels], rows))


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


def verdicts(results: list[EndpointResult], cfg: BenchConfig,
             runs: list[list[EndpointResult]] | None = None) -> str:
    """What a person reads first: per endpoint, passed or why not (with ``runs``: over every run), and the
    figures that matter most (request and output throughput, median and p99 TTFT, failed share; of the last
    run); "-" where nothing completed."""
    rows = []
    over = {e["label"]: e["failed_because"] for e in report.series_verdict(runs, cfg)["endpoints"]} if runs else {}
    for r in results:
        why = over.get(r.label, "") if runs else verdict(r, cfg)
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


def page(results: list[EndpointResult], cfg: BenchConfig, runs: list[list[EndpointResult]] | None = None) -> str:
    when = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>smoke-bench report</title>"
             f"<style>{STYLE}</style></head><body>",
             f"<h1>smoke-bench: {len(results)} endpoint(s)</h1><p class='note'>{_e(when)}; metrics as "
             "<code>vllm bench serve</code> defines them</p>"]
    stopped_by = next((r.interrupted for r in results if r.interrupted), "")
    if stopped_by:
        parts.append(f"<p class='bad'><b>Interrupted by {_e(stopped_by)}</b>: the figures are what completed "
                     "before it; requests in flight were cancelled and are not counted.</p>")
    parts.append(verdicts(results, cfg, runs))
    if runs:
        parts.append(spread_section(runs))
    if any(r.sweep is not None for r in results):
        lines = report.sweep_summary(results, cfg.goodput, (results[0].sweep or {}).get("attainment_required", 0.9))
        parts.append("<h2>How many users can this box serve?</h2><ul>"
                     + "".join(f"<li>{_e(x)}</li>" for x in lines) + "</ul>")
    parts.append("<h2>Side by side</h2>" + (f"<p class='note'>the last of {len(runs)} runs</p>" if runs else ""))
    parts.append(comparison(results))
    parts.append(server_section(results))
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


def write_html(results: list[EndpointResult], cfg: BenchConfig, path: str,
               runs: list[list[EndpointResult]] | None = None) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    write_whole(path, page(results, cfg, runs))
