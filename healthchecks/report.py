"""Benchmark output: the side-by-side rich table, JSON with `vllm bench serve` field names, a PNG."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from rich.table import Table

from .bench import EndpointResult

ROWS: list[tuple[str, str, str]] = [
    ("completed", "completed", "{:.0f}"),
    ("failed", "failed", "{:.0f}"),
    ("duration", "duration (s)", "{:.2f}"),
    ("total_input_tokens", "input tokens", "{:.0f}"),
    ("total_output_tokens", "output tokens", "{:.0f}"),
    ("request_throughput", "requests/s", "{:.2f}"),
    ("output_throughput", "output tok/s", "{:.1f}"),
    ("total_token_throughput", "total tok/s", "{:.1f}"),
    ("request_goodput", "goodput req/s", "{:.2f}"),
]
for _m, _title in (("ttft", "TTFT"), ("tpot", "TPOT"), ("itl", "ITL"), ("e2el", "E2EL")):
    for _stat in ("mean", "median", "std", "p50", "p90", "p99"):
        ROWS.append((f"{_stat}_{_m}_ms", f"{_title} {_stat} (ms)", "{:.2f}"))
ROWS.append(("mean_queue_wait_ms", "queue wait mean (ms)", "{:.2f}"))


def _fmt(value: Any, fmt: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return fmt.format(value)


def comparison_table(results: list[EndpointResult]) -> Table:
    table = Table(title="smoke-bench (metrics as in vllm bench serve)")
    table.add_column("metric")
    for r in results:
        table.add_column(f"{r.label}\n{r.engine} · {r.api}\n{r.model}", justify="right")
    for key, title, fmt in ROWS:
        if key == "request_goodput" and all(r.metrics.get(key) is None for r in results):
            continue
        table.add_row(title, *[_fmt(r.metrics.get(key), fmt) for r in results])
    if any(r.kv_cache_peak_pct is not None for r in results):
        table.add_row("KV cache peak (%)", *[_fmt(r.kv_cache_peak_pct, "{:.1f}") for r in results])
    gpus = sorted({g for r in results for g in r.gpu_peak_mib})
    for g in gpus:
        table.add_row(f"GPU {g} peak (MiB)", *[_fmt(r.gpu_peak_mib.get(g), "{:.0f}") for r in results])
    stat_keys = sorted({k for r in results for k in r.engine_stats})
    for k in stat_keys:
        table.add_row(f"engine {k}", *[_fmt(r.engine_stats.get(k), "{:.1f}") for r in results])
    return table


def to_dict(r: EndpointResult) -> dict[str, Any]:
    d: dict[str, Any] = {"endpoint": r.url, "label": r.label, "engine": r.engine, "model": r.model,
                         "api": r.api, "num_prompts": r.num_prompts}
    for k, v in r.metrics.items():
        d[k] = None if isinstance(v, float) and math.isnan(v) else v
    d["errors"] = dict(r.errors)
    d["kv_cache_peak_pct"] = r.kv_cache_peak_pct
    d["gpu_peak_memory_mib"] = r.gpu_peak_mib
    if r.engine_stats:
        d[r.engine] = r.engine_stats  # the engine's own timings, under its name
    ok = [q for q in r.requests if q.success]
    d["input_lens"] = [q.prompt_tokens for q in ok]
    d["output_lens"] = [q.output_tokens if q.output_tokens is not None else q.chunks for q in ok]
    d["ttfts"] = [q.ttft for q in ok]
    d["itls"] = [q.itl for q in ok]
    if r.setup_error:
        d["setup_error"] = r.setup_error
    return d


def write_json(results: list[EndpointResult], path: str) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps({"endpoints": [to_dict(r) for r in results]}, indent=2) + "\n")


def write_plot(results: list[EndpointResult], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

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
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
