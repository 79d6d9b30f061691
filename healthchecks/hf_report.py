"""The provider report of a smoke-bench run against Hugging Face's router: for each provider choice (``auto``,
a policy, a provider, or a failover chain), mean/median latency and TTFT, output tokens/s, success rate,
failovers and retries, errors by class, and which providers really answered (``x-inference-provider``).

It answers the course's question "auto or an explicit provider?" from the same run that produced the usual
side-by-side table. Input: the benchmark's results in memory (anything with ``label``, ``meta``, ``metrics``,
``requests``, ``errors``) or the entries of smoke-bench's ``--json`` file. Only endpoints with a provider
choice (``meta["provider"]``, set by the hf engine) are reported. Nothing here prints.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any

from rich.markup import escape
from rich.table import Table

FIELDS = ("label", "provider", "requests", "completed", "success_rate", "mean_ttft_ms", "median_ttft_ms",
          "mean_e2el_ms", "median_e2el_ms", "output_throughput", "failovers", "retries", "served_by", "errors")


def _num(value: Any) -> float | None:
    if isinstance(value, int | float) and not (isinstance(value, float) and math.isnan(value)):
        return float(value)
    return None


def row_from_result(r: Any) -> dict[str, Any] | None:
    """One report row from an in-memory benchmark result; None when it has no provider choice."""
    meta: Mapping[str, str] = getattr(r, "meta", {}) or {}
    if "provider" not in meta:
        return None
    reqs = list(getattr(r, "requests", []) or [])
    m: Mapping[str, Any] = getattr(r, "metrics", {}) or {}
    n = len(reqs) or int(getattr(r, "num_prompts", 0) or 0)
    completed = int(m.get("completed", sum(1 for q in reqs if q.success)))
    served = Counter(q.served_by for q in reqs if q.success and q.served_by is not None)
    return {
        "label": str(getattr(r, "label", "?")), "provider": meta["provider"], "requests": n, "completed": completed,
        "success_rate": completed / n if n else None,
        **{k: _num(m.get(k)) for k in ("mean_ttft_ms", "median_ttft_ms", "mean_e2el_ms", "median_e2el_ms",
                                       "output_throughput")},
        "failovers": sum(q.failovers for q in reqs),
        "retries": sum(int((q.engine_stats or {}).get("retries", 0)) for q in reqs),
        "served_by": dict(served) or None,
        "errors": dict(getattr(r, "errors", {}) or {}),
    }


def row_from_json(e: Mapping[str, Any], engine_key: str = "hf") -> dict[str, Any] | None:
    """One report row from an entry of smoke-bench's JSON (``{"endpoints": [...]}``)."""
    if "provider" not in e:
        return None
    completed = int(e.get("completed") or 0)
    n = int(e.get("num_prompts") or completed + int(e.get("failed") or 0))
    raw = e.get(engine_key)
    stats: Mapping[str, Any] = raw if isinstance(raw, dict) else {}
    errors = e.get("error_counts", e.get("errors")) or {}
    return {
        "label": str(e.get("label", "?")), "provider": str(e["provider"]), "requests": n, "completed": completed,
        "success_rate": completed / n if n else None,
        **{k: _num(e.get(k)) for k in ("mean_ttft_ms", "median_ttft_ms", "mean_e2el_ms", "median_e2el_ms",
                                       "output_throughput")},
        "failovers": int(e.get("failovers") or 0),
        "retries": int(_num(stats.get("retries")) or 0),
        "served_by": e.get("served_by") or None,
        "errors": dict(errors) if isinstance(errors, dict) else {},
    }


def rows(results: Iterable[Any]) -> list[dict[str, Any]]:
    out = []
    for r in results:
        row = row_from_json(r) if isinstance(r, Mapping) else row_from_result(r)
        if row is not None:
            out.append(row)
    return out


def _ms(v: float | None) -> str:
    return "-" if v is None else f"{v:.0f}"


def table(report_rows: list[dict[str, Any]]) -> Table | None:
    """The provider view as a rich table (None when no endpoint had a provider choice)."""
    if not report_rows:
        return None
    t = Table(title="Hugging Face providers: auto vs explicit (served by = x-inference-provider)")
    for col, just in (("choice", "left"), ("served by", "left"), ("success", "right"), ("TTFT mean/median ms", "right"),
                      ("E2EL mean/median ms", "right"), ("output tok/s", "right"), ("failovers", "right"),
                      ("retries", "right"), ("errors by class", "left")):
        t.add_column(col, justify=just, overflow="fold")  # type: ignore[arg-type]
    for r in report_rows:
        served = r["served_by"]
        served_txt = ", ".join(f"{k} {v}" for k, v in sorted(served.items(), key=lambda kv: -kv[1])) if served \
            else "unknown (no header)" if r["completed"] else "-"
        rate = "-" if r["success_rate"] is None \
            else f"{r['completed']}/{r['requests']} ({100 * r['success_rate']:.0f}%)"
        thr = "-" if r["output_throughput"] is None else f"{r['output_throughput']:.1f}"
        errs = "; ".join(f"{n}x {k}" for k, n in sorted(r["errors"].items(), key=lambda kv: -kv[1])) or "-"
        t.add_row(escape(str(r["provider"])), escape(served_txt), rate,
                  f"{_ms(r['mean_ttft_ms'])} / {_ms(r['median_ttft_ms'])}",
                  f"{_ms(r['mean_e2el_ms'])} / {_ms(r['median_e2el_ms'])}", thr, str(r["failovers"]),
                  str(r["retries"]), escape(errs))
    return t
