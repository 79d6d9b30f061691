"""Benchmark output: the side-by-side rich table, JSON with `vllm bench serve --save-result` field names, PNGs
(distributions; sweep curves), and the sweep's tables. Pure rendering: no I/O but the files written."""

from __future__ import annotations

import datetime as dt
import io
import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.table import Table

from . import server_metrics as sm
from .bench import EndpointResult, failure_share, verdict
from .cli.common import write_whole
from .metrics import _pct_name

if TYPE_CHECKING:
    from .bench import BenchConfig

TITLES = {"ttft": "TTFT", "tpot": "TPOT", "itl": "ITL", "e2el": "E2EL"}
HEAD: list[tuple[str, str, str]] = [
    ("completed", "completed", "{:.0f}"),
    ("failed", "failed", "{:.0f}"),
    ("duration", "duration (s)", "{:.2f}"),
    ("total_input_tokens", "input tokens", "{:.0f}"),
    ("total_output_tokens", "output tokens", "{:.0f}"),
    ("request_throughput", "requests/s", "{:.2f}"),
    ("output_throughput", "output tok/s", "{:.1f}"),
    ("max_output_tokens_per_s", "peak output tok/s", "{:.0f}"),
    ("max_concurrent_requests", "peak concurrent requests", "{:.0f}"),
    ("total_token_throughput", "total tok/s", "{:.1f}"),
    ("request_goodput", "goodput req/s", "{:.2f}"),
]


def rows(results: list[EndpointResult]) -> list[tuple[str, str, str]]:
    """The table's rows: the headline figures, then each metric's statistics present in the results."""
    keys = {k for r in results for k in r.metrics}
    out = list(HEAD)
    for m, title in TITLES.items():
        for stat in ("mean", "median", "std"):
            if f"{stat}_{m}_ms" in keys:
                out.append((f"{stat}_{m}_ms", f"{title} {stat} (ms)", "{:.2f}"))
        pcts = sorted((float(k.split("_", 1)[0][1:]), k) for k in keys
                      if k.startswith("p") and k.endswith(f"_{m}_ms") and k[1].isdigit())
        out += [(k, f"{title} {_pct_name(p)} (ms)", "{:.2f}") for p, k in pcts]
    out.append(("mean_queue_wait_ms", "queue wait mean (ms)", "{:.2f}"))
    return out


def _fmt(value: Any, fmt: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return fmt.format(value)


COUNTS = ("completed", "failed")


def cell(r: EndpointResult, key: str, fmt: str) -> str:
    """One figure of one endpoint: "-" where nothing completed (a throughput of 0.00 or a latency of 0.00 would
    read as a measurement), the counts always."""
    if r.completed == 0 and key not in COUNTS:
        return "-"
    return _fmt(r.metrics.get(key), fmt)


def comparison_table(results: list[EndpointResult], cfg: BenchConfig | None = None) -> Table:
    table = Table(title="smoke-bench (metrics as in vllm bench serve)")
    table.add_column("metric")
    for r in results:
        table.add_column(f"{r.label}\n{r.engine} · {r.api}\n{r.model}", justify="right")
    for key, title, fmt in rows(results):
        if key == "request_goodput" and all(r.metrics.get(key) is None for r in results):
            continue
        table.add_row(title, *[cell(r, key, fmt) for r in results])
    if any(r.warnings for r in results):
        table.add_row("warnings (kit rules)", *[str(sum(r.warnings.values())) for r in results])
    if any(r.kv_cache_peak_pct is not None for r in results):
        table.add_row("KV cache peak (%)", *[_fmt(r.kv_cache_peak_pct, "{:.1f}") for r in results])
    for title, cells in server_rows(results):
        table.add_row(title, *cells)
    # -- GPU memory per engine (the lead's section: gpu.GpuMemory per endpoint) --
    _gpu_rows(table, results)
    stat_keys = sorted({k for r in results for k in r.engine_stats})
    for k in stat_keys:
        table.add_row(f"engine {k}", *[_fmt(r.engine_stats.get(k), "{:.1f}") for r in results])
    if any(r.served_by for r in results):
        table.add_row("served by", *[", ".join(f"{k} {v}" for k, v in (r.served_by or {}).items()) or "-"
                                     for r in results])
        table.add_row("failovers", *[str(r.failovers) for r in results])
    table.add_row("prompt tokens from", *[r.tokens_from or "-" for r in results])
    return table


def server_rows(results: list[EndpointResult]) -> list[tuple[str, list[str]]]:
    """The server's own figures beside the client's: one row per metric any endpoint reported (peak / mean of
    a gauge, the run's rate of a hit rate; "-" where an engine has no such figure), and where they came from."""
    keys: dict[str, str] = {}
    for r in results:
        for key, m in ((r.server_metrics or {}).get("metrics") or {}).items():
            keys.setdefault(key, sm.row_title(m))
    if not keys and not any(r.server_metrics and r.server_metrics.get("note") for r in results):
        return []
    out = [(title, [sm.cell(((r.server_metrics or {}).get("metrics") or {}).get(key)) for r in results])
           for key, title in keys.items()]
    out.append(("server figures from", [server_source(r) for r in results]))
    return out


def server_source(r: EndpointResult) -> str:
    s = r.server_metrics
    if not s:
        return "-"
    return str(s.get("note") or s.get("source") or "-")


def _gpu_rows(table: Table, results: list[EndpointResult]) -> None:
    """Per GPU: the engine's own processes' peak, and the device's total beside it (labelled as such);
    where the engine's share cannot be attributed, the reason instead of a number."""
    mems = [r.gpu_memory for r in results]
    gpus = sorted({g for m in mems if m for g in (*m.engine_peak_mib, *m.device_peak_mib)})
    for g in gpus:
        table.add_row(f"GPU {g} engine peak (MiB)",
                      *[_fmt(m.engine_peak_mib.get(g, 0.0), "{:.0f}") if m and m.engine_peak_mib else
                        (m.note if m else "-") for m in mems])
        table.add_row(f"GPU {g} device total peak (MiB)",
                      *[_fmt(m.device_peak_mib.get(g), "{:.0f}") if m else "-" for m in mems])
    if not gpus and any(m and m.note for m in mems):
        table.add_row("GPU memory", *[(m.note if m else "-") for m in mems])


def _clean(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return None if math.isnan(v) else ("inf" if v > 0 else "-inf")
    return v


def to_dict(r: EndpointResult, cfg: BenchConfig | None = None) -> dict[str, Any]:
    """One endpoint as `vllm bench serve --save-result --save-detailed` writes a run (same names and types;
    per-request lists cover every request, failed ones included, in send order), plus the kit's own fields
    under names vLLM does not use."""
    settings = cfg.settings() if cfg else {}
    d: dict[str, Any] = {
        "date": dt.datetime.now().strftime("%Y%m%d-%H%M%S"),
        "endpoint_type": r.api, "backend": r.api, "label": r.label, "model_id": r.model,
        "tokenizer_id": r.tokens_from or None, "num_prompts": r.num_prompts,
        "request_rate": settings.get("request_rate", "inf"), "burstiness": settings.get("burstiness", 1.0),
        "max_concurrency": settings.get("max_concurrency"),
    }
    if cfg and cfg.ramp_up_strategy:
        d.update(ramp_up_strategy=cfg.ramp_up_strategy, ramp_up_start_rps=cfg.ramp_up_start_rps,
                 ramp_up_end_rps=cfg.ramp_up_end_rps)
    m = r.metrics
    for k in ("duration", "completed", "failed", "total_input_tokens", "total_output_tokens",
              "request_throughput", "request_goodput", "output_throughput", "total_token_throughput"):
        d[k] = _clean(m.get(k))
    reqs = r.requests
    d["input_lens"] = [q.prompt_tokens or 0 for q in reqs]
    d["output_lens"] = [(q.output_tokens or q.chunks) if q.success else 0 for q in reqs]
    d["ttfts"] = [q.ttft for q in reqs]
    d["itls"] = [q.itl for q in reqs]
    d["latencies"] = [q.latency for q in reqs]
    d["start_times"] = [q.start_time for q in reqs]
    d["queue_times"] = [q.queue_wait for q in reqs]
    if cfg is not None and cfg.save_detailed:
        d["generated_texts"] = [q.generated_text for q in reqs]
    d["errors"] = [q.error for q in reqs]
    if any(q.request_id for q in reqs):  # the server's x-request-id per request (hf: ask support with these)
        d["request_ids"] = [q.request_id for q in reqs]
    if any(q.failed_attempts for q in reqs):
        d["failed_attempts"] = [q.failed_attempts for q in reqs]
    d["max_output_tokens_per_s"] = m.get("max_output_tokens_per_s", 0.0)
    d["max_concurrent_requests"] = m.get("max_concurrent_requests", 0)
    d["rtfx"] = 0.0
    for k, v in m.items():
        if k.endswith("_ms") and k not in d:
            d[k] = _clean(v)
    # -- the kit's own fields --
    d.update({"endpoint": r.url, "engine": r.engine, "model": r.model, "api": r.api,
              "error_counts": dict(r.errors), "warnings": [q.warning for q in reqs],
              "warning_counts": dict(r.warnings), "output_tokens_estimated": m.get("output_tokens_estimated", 0),
              "good_completed": m.get("good_completed"), "kv_cache_peak_pct": r.kv_cache_peak_pct,
              "gpu_peak_memory_mib": r.gpu_peak_mib,  # device totals, as before
              "gpu_memory": r.gpu_memory.to_dict() if r.gpu_memory else None,
              "served_by": r.served_by, "failovers": r.failovers, "prompt_tokens_from": r.tokens_from,
              "cut_short": r.cut_short, "interrupted": r.interrupted or None,
              "stopped_early": r.stopped_early or None, "server_metrics_scrapes": r.scrapes,
              "server_metrics": r.server_metrics})
    for k, v in r.meta.items():
        d.setdefault(k, v)
    if r.engine_stats:
        d[r.engine] = r.engine_stats  # the engine's own timings, under its name
    if r.setup_error:
        d["setup_error"] = r.setup_error
    if r.sweep is not None:
        d["sweep"] = r.sweep
    return d


def document(results: list[EndpointResult], cfg: BenchConfig | None = None) -> dict[str, Any]:
    from . import __version__

    doc: dict[str, Any] = {"tool": f"smoke-bench {__version__}", "settings": cfg.settings() if cfg else {}}
    doc["interrupted"] = next((r.interrupted for r in results if r.interrupted), None)
    if cfg is not None:
        doc["verdict"] = run_verdict(results, cfg)
    doc["endpoints"] = [to_dict(r, cfg) for r in results]
    return doc


def run_verdict(results: list[EndpointResult], cfg: BenchConfig) -> dict[str, Any]:
    """What decided the exit code: the threshold applied, and per endpoint the observed failure share and why
    it failed ("" when it passed)."""
    per = [{"label": r.label, "failure_share": failure_share(r), "failed_because": verdict(r, cfg)}
           for r in results]
    return {"passed": not any(e["failed_because"] for e in per), "max_failure_share": cfg.max_failure_share,
            "rule": "sweep: a load met the SLOs" if any(r.sweep is not None for r in results)
            else "requests completed and failed share <= max_failure_share", "endpoints": per}


SPREAD: list[tuple[str, str, str]] = [
    ("request_throughput", "requests/s", "{:.2f}"), ("output_throughput", "output tok/s", "{:.1f}"),
    ("total_token_throughput", "total tok/s", "{:.1f}"),
    *[(f"{stat}_{m}_ms", f"{TITLES[m]} {'median' if stat == 'median' else 'p99'} (ms)", "{:.2f}")
      for m in ("ttft", "tpot", "itl", "e2el") for stat in ("median", "p99")],
    ("completed", "completed", "{:.0f}"), ("failed", "failed", "{:.0f}"), ("duration", "duration (s)", "{:.2f}"),
]


def complete_runs(runs: list[list[EndpointResult]]) -> list[list[EndpointResult]]:
    """The runs that ran to their end (not the one a signal interrupted)."""
    return [run for run in runs if not any(r.interrupted for r in run)]


def spread(runs: list[list[EndpointResult]]) -> dict[str, dict[str, dict[str, Any]]]:
    """``--num-runs``: per endpoint, each headline figure's min / median / max over the complete runs, with the
    values themselves (a run where the endpoint completed nothing gives no figure but its counts); and the
    server's own figures (peak, or a hit rate's run rate) likewise, under ``server:<key>``."""
    import numpy as np

    full = complete_runs(runs)
    labels = list(dict.fromkeys(r.label for run in runs for r in run))
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for label in labels:
        mine = [r for run in full for r in run if r.label == label]
        figures: dict[str, list[float]] = {}
        for r in mine:
            for key, _, _ in SPREAD:
                v = r.metrics.get(key)
                if isinstance(v, int | float) and math.isfinite(v) and (r.completed or key in COUNTS):
                    figures.setdefault(key, []).append(float(v))
            for key, m in ((r.server_metrics or {}).get("metrics") or {}).items():
                if (v := sm.headline(m)) is not None:
                    figures.setdefault(f"server:{key}", []).append(float(v))
        out[label] = {k: {"min": min(v), "median": float(np.median(v)), "max": max(v), "values": v}
                      for k, v in figures.items()}
    return out


def spread_titles(runs: list[list[EndpointResult]]) -> list[tuple[str, str, str]]:
    """(key, title, format) of the spread's rows: the client's headline figures, then the server's."""
    rows_ = list(SPREAD)
    seen: dict[str, str] = {}
    for run in runs:
        for r in run:
            for key, m in ((r.server_metrics or {}).get("metrics") or {}).items():
                seen.setdefault(f"server:{key}", sm.row_title(m).replace("peak / mean", "peak"))
    return rows_ + [(k, t, "{:.1f}") for k, t in seen.items()]


def spread_cell(fig: dict[str, Any] | None, fmt: str) -> str:
    if not fig:
        return "-"
    return " / ".join(_fmt(fig[k], fmt) for k in ("min", "median", "max"))


def spread_table(runs: list[list[EndpointResult]]) -> Table:
    sp = spread(runs)
    full = len(complete_runs(runs))
    table = Table(title=f"smoke-bench over {full} complete run(s) of {len(runs)}: min / median / max")
    table.add_column("metric")
    labels = list(sp)
    engines = {r.label: r for run in runs for r in run}
    for label in labels:
        r = engines[label]
        table.add_column(f"{label}\n{r.engine} · {r.api}\n{r.model}", justify="right")
    for key, title, fmt in spread_titles(runs):
        if all(key not in sp[label] for label in labels):
            continue
        table.add_row(title, *[spread_cell(sp[label].get(key), fmt) for label in labels])
    return table


def series_verdict(runs: list[list[EndpointResult]], cfg: BenchConfig) -> dict[str, Any]:
    """``--num-runs``: the gate over all runs: an endpoint passes when it passed every run (the same rules as one
    run); its failure share is over all its requests of all runs."""
    labels = list(dict.fromkeys(r.label for run in runs for r in run))
    per = []
    for label in labels:
        mine = [(i, r) for i, run in enumerate(runs, 1) for r in run if r.label == label]
        failed = sum(int(r.metrics.get("failed", 0) or 0) for _, r in mine)
        ended = sum(r.completed for _, r in mine) + failed
        why = "; ".join(f"run {i}: {w}" for i, r in mine if (w := verdict(r, cfg)))
        per.append({"label": label, "failure_share": failed / ended if ended else None, "failed_because": why})
    return {"passed": not any(e["failed_because"] for e in per), "max_failure_share": cfg.max_failure_share,
            "rule": "every run: requests completed and failed share <= max_failure_share", "endpoints": per}


def series_document(runs: list[list[EndpointResult]], cfg: BenchConfig) -> dict[str, Any]:
    """``--num-runs N``: the last run as one run's document (``endpoints``), each run under ``runs``, the
    spread of each headline figure over the complete runs under ``spread``, the verdict over all runs."""
    doc = document(runs[-1], cfg)
    doc["interrupted"] = next((r.interrupted for run in runs for r in run if r.interrupted), None)
    doc["num_runs"] = cfg.num_runs
    doc["runs_completed"] = len(complete_runs(runs))
    doc["runs"] = [{"run": i, "interrupted": next((r.interrupted for r in run if r.interrupted), None),
                    "verdict": run_verdict(run, cfg), "endpoints": [to_dict(r, cfg) for r in run]}
                   for i, run in enumerate(runs, 1)]
    doc["spread"] = spread(runs)
    doc["verdict"] = series_verdict(runs, cfg)
    return doc


def json_safe(v: Any) -> Any:
    """``v`` with every non-finite float, however deep (an engine's own figures included: Ollama durations of
    1e308 ns average to inf), written as vLLM's JSON writes them: "inf"/"-inf", NaN as null."""
    if isinstance(v, float):
        return _clean(v)
    if isinstance(v, dict):
        return {k: json_safe(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [json_safe(x) for x in v]
    return v


def write_json(results: list[EndpointResult], path: str, cfg: BenchConfig | None = None,
               runs: list[list[EndpointResult]] | None = None) -> None:
    """One run's document, or with ``runs`` (``--num-runs`` above 1) the series' (:func:`series_document`)."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    doc = series_document(runs, cfg) if runs and cfg is not None else document(results, cfg)
    text = json.dumps(json_safe(doc), indent=2, allow_nan=False, default=str)
    write_whole(path, text + "\n")  # a full disk leaves the previous file (or none), never half a document


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def distributions_figure(results: list[EndpointResult]) -> Any:
    plt = _plt()
    labels = [f"{r.label}\n({r.engine})" for r in results]
    fig, axes = plt.subplots(2, 2, figsize=(12, 8), constrained_layout=True)
    series = {
        "TTFT (ms)": [[q.ttft * 1000 for q in r.requests if q.success] for r in results],
        "ITL (ms)": [[x * 1000 for q in r.requests if q.success for x in q.itl] for r in results],
        "E2E latency (ms)": [[q.latency * 1000 for q in r.requests if q.success] for r in results],
    }
    for ax, (title, data) in zip(axes.flat, series.items(), strict=False):
        ax.boxplot([d or [float("nan")] for d in data], showfliers=True)
        ax.set_xticks(range(1, len(labels) + 1), labels, fontsize=8)
        ax.set_title(title)
        ax.grid(axis="y", alpha=0.3)
    ax = axes.flat[3]
    thr = [r.metrics.get("output_throughput") or 0.0 for r in results]
    bars = ax.bar(range(len(results)), [0.0 if math.isnan(t) else t for t in thr], color="tab:green")
    ax.bar_label(bars, fmt="%.1f", fontsize=8)
    ax.set_xticks(range(len(labels)), labels, fontsize=8)
    ax.set_title("output throughput (tok/s)")
    ax.grid(axis="y", alpha=0.3)
    fig.suptitle("smoke-bench: endpoints side by side")
    return fig


def sweep_figure(results: list[EndpointResult]) -> Any:
    """Every engine's latency vs throughput curve, one line per endpoint: median TTFT and median TPOT
    against the achieved request rate; the best point within the SLOs circled."""
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(13, 5), constrained_layout=True)
    panels = (("median_ttft_ms", "median TTFT (ms)"), ("median_tpot_ms", "median TPOT (ms)"))
    for r in results:
        pts = (r.sweep or {}).get("points") or []
        pts = [p for p in pts if p.get("completed")]
        if not pts:
            continue
        # points stay in load order (one user, the ladder upwards, everything at once): the curve follows the load
        best = (r.sweep or {}).get("best")
        for ax, (key, title) in zip(axes, panels, strict=True):
            xs = [p["request_throughput"] for p in pts]
            ys = [p.get(key) or float("nan") for p in pts]
            (line,) = ax.plot(xs, ys, marker="o", label=f"{r.label} ({r.engine})")
            if best:
                ax.plot([best["request_throughput"]], [best.get(key) or float("nan")], marker="o", ms=14,
                        mfc="none", color=line.get_color())
            ax.set_xlabel("achieved throughput (requests/s)")
            ax.set_ylabel(title)
            ax.set_yscale("log")
            ax.grid(alpha=0.3, which="both")
    for ax in axes:
        if ax.lines:
            ax.legend(fontsize=8)
    fig.suptitle("smoke-bench sweep: latency vs throughput (circled: highest load within the SLOs)")
    return fig


def save(fig: Any, path: str | None = None, dpi: int = 100) -> bytes:
    """Write the figure to ``path`` (format from its suffix), or return PNG bytes when path is None."""
    plt = _plt()
    try:
        if path is None:
            buf = io.BytesIO()
            fig.savefig(buf, format="png", dpi=dpi)
            return buf.getvalue()
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=dpi)
        return b""
    finally:
        plt.close(fig)


def write_plot(results: list[EndpointResult], path: str) -> None:
    save(distributions_figure(results), path)


def write_sweep_plot(results: list[EndpointResult], path: str) -> None:
    save(sweep_figure(results), path)


SWEEP_COLUMNS: list[tuple[str, str, str]] = [
    ("kind", "load", "{}"), ("offered", "offered", "{}"), ("request_throughput", "req/s", "{:.2f}"),
    ("output_throughput", "out tok/s", "{:.1f}"), ("median_ttft_ms", "TTFT p50", "{:.0f}"),
    ("p90_ttft_ms", "TTFT p90", "{:.0f}"), ("median_tpot_ms", "TPOT p50", "{:.0f}"),
    ("p90_tpot_ms", "TPOT p90", "{:.0f}"), ("p90_e2el_ms", "E2EL p90", "{:.0f}"),
    ("users", "users", "{:.1f}"), ("attainment", "SLO met", "{:.0%}"), ("meets", "ok", "{}"),
]


def sweep_table(results: list[EndpointResult]) -> Table:
    table = Table(title="smoke-bench sweep (latencies in ms; users = requests in flight, Little's law)")
    table.add_column("endpoint")
    for _, title, _ in SWEEP_COLUMNS:
        table.add_column(title, justify="right")
    for r in results:
        pts = (r.sweep or {}).get("points") or []
        if not pts:
            table.add_row(r.label, *["-"] * len(SWEEP_COLUMNS))
        for i, p in enumerate(pts):
            cells = []
            for key, _, fmt in SWEEP_COLUMNS:
                v = p.get(key)
                cells.append("yes" if v is True else "no" if v is False else _fmt(v, fmt))
            table.add_row(r.label if i == 0 else "", *cells)
    return table


def budget_starved(sw: dict[str, Any]) -> str:
    """Why a sweep without a passing load says nothing about the SLOs: its first load, one request at a time,
    the one every verdict rests on, was cut at its share of --max-seconds (requests not sent or cancelled), or
    no load ran at all. "" when the loads ran in full."""
    pts = sw.get("points") or []
    first = next((p for p in pts if p.get("kind") == "synchronous"), None)
    if first is None:
        return "no load ran"
    if not first.get("cut_short"):
        return ""
    done, total = first.get("completed") or 0, (first.get("sent") or 0) + first["cut_short"]
    return f"one request at a time completed {done} of {total} requests before its share of the budget ran out"


def sweep_summary(results: list[EndpointResult], slos: dict[str, float], attainment: float) -> list[str]:
    """One line per endpoint: the highest load that met the SLOs, with its figures."""
    targets = " ".join(f"{k}<={v:g}ms" for k, v in slos.items())
    lines = []
    for r in results:
        sw = r.sweep or {}
        best = sw.get("best")
        if r.setup_error:
            lines.append(f"{r.label}: not measured: {r.setup_error}")
        elif not best and (starved := budget_starved(sw)):
            lines.append(f"{r.label} ({r.engine}): no verdict: the time budget (--max-seconds) was too small: "
                         f"{starved}; raise --max-seconds (or lower --sweep-points / --num-prompts)")
        elif not best:
            lines.append(f"{r.label} ({r.engine}): no load met {targets} for {attainment:.0%} of requests "
                         "(not even one request at a time)")
        else:
            top = bool(sw.get("highest_load_met"))
            lines.append(
                f"{r.label} ({r.engine}): serves {'at least ' if top else ''}{best['request_throughput']:.2f} req/s, "
                f"about "
                f"{best['users']:.1f} concurrent users, {best['output_throughput']:.1f} output tok/s within "
                f"{targets} ({best['attainment']:.0%} of requests; TTFT p90 {best.get('p90_ttft_ms', 0):.0f} ms, "
                f"TPOT p90 {best.get('p90_tpot_ms', 0):.0f} ms) at load {best['offered']}"
                + (f"; saturated at {sw['saturated_at']}" if sw.get("saturated_at") else "")
                + ("; the highest load tried met them: raise --num-prompts (or --max-concurrency) to find the limit"
                   if top else "")
                + ("; a burst of all requests at once met them too" if sw.get("burst_met") else ""))
    return lines
