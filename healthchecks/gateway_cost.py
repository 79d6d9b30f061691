"""The gateway's own cost as a figure: a smoke-bench run that measured a gateway and, in the same run, the
upstreams behind it directly (same workload, same settings, one after another) compares the two.

Who answered each gateway request is what the gateway said (``served_by``: LiteLLM's
``x-litellm-model-api-base``); that upstream's direct measurement is the endpoint of the run at the same
address (host and port; 127.0.0.1, localhost and ::1 are one host), or, for a gateway inside the compose project
(``http://vllm:8000``), the one endpoint of the run whose engine's compose service has that name.

Per gateway endpoint:
- ``added_ttft_ms``: its median TTFT minus the upstreams' own median TTFT (weighted by the share of requests each
  served), in ms;
- ``throughput_ratio``: its output tokens/s over the upstreams' own (weighted alike); 1.0 = no cost, and
  ``request_throughput_ratio`` the same for requests/s.
Figures only when every completed gateway request was served by an upstream measured in the run.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from statistics import median
from typing import TYPE_CHECKING, Any

import httpx

if TYPE_CHECKING:
    from .bench import EndpointResult

LOOPBACK = {"127.0.0.1", "localhost", "::1"}


@dataclass
class Leg:
    """The gateway requests one upstream served, beside that upstream measured directly."""

    api_base: str
    share: float  # of the gateway's completed requests
    direct: EndpointResult | None
    gateway_ttft_ms: float  # median over these requests

    @property
    def direct_ttft_ms(self) -> float | None:
        return _metric(self.direct, "median_ttft_ms") if self.direct is not None else None


@dataclass
class Cost:
    gateway: EndpointResult
    legs: list[Leg] = field(default_factory=list)
    added_ttft_ms: float | None = None
    throughput_ratio: float | None = None
    request_throughput_ratio: float | None = None
    why_not: str = ""  # why no figure

    @property
    def compared_with(self) -> str:
        return ", ".join(leg.direct.label for leg in self.legs if leg.direct is not None)


def _metric(r: EndpointResult, key: str) -> float | None:
    v = r.metrics.get(key)
    return float(v) if isinstance(v, int | float) and math.isfinite(v) else None


def host_port(url: str) -> tuple[str, int] | None:
    try:
        u = httpx.URL(url)
    except (httpx.InvalidURL, TypeError):
        return None
    if not u.host:
        return None
    host = "127.0.0.1" if u.host in LOOPBACK else u.host.lower()
    return host, u.port or (443 if u.scheme == "https" else 80)


def match(api_base: str, direct: list[EndpointResult]) -> EndpointResult | None:
    """The run's direct measurement of the upstream at ``api_base`` (see the module's text), or None."""
    from .engines import CATALOGUE

    where = host_port(api_base)
    if where is None:
        return None
    measured = [d for d in direct if _metric(d, "completed")]
    same = [d for d in measured if host_port(d.url) == where]
    if len(same) == 1:
        return same[0]
    by_service = [d for d in measured if (spec := CATALOGUE.get(d.engine)) is not None
                  and spec.compose_service == where[0]]
    return by_service[0] if len(by_service) == 1 else None


def compare(gateways: list[EndpointResult], direct: list[EndpointResult]) -> list[Cost]:
    return [_one(g, direct) for g in gateways]


def _one(g: EndpointResult, direct: list[EndpointResult]) -> Cost:
    cost = Cost(g)
    ok = [q for q in g.requests if q.success]
    if not ok:
        cost.why_not = "no completed request through the gateway"
        return cost
    served = Counter(q.served_by or "" for q in ok)
    for api_base, n in served.most_common():
        ttft = median(q.ttft for q in ok if (q.served_by or "") == api_base) * 1000
        cost.legs.append(Leg(api_base, n / len(ok), match(api_base, direct) if api_base else None, ttft))
    if "" in served:
        cost.why_not = f"{served['']} request(s) without {'x-litellm-model-api-base'} (who answered unknown)"
        return cost
    missing = [leg.api_base for leg in cost.legs if leg.direct is None]
    if missing:
        cost.why_not = f"not measured directly in this run: {', '.join(missing)}"
        return cost
    ref_ttft = sum(leg.share * (leg.direct_ttft_ms or 0.0) for leg in cost.legs)
    g_ttft = _metric(g, "median_ttft_ms")
    if g_ttft is not None and all(leg.direct_ttft_ms is not None for leg in cost.legs):
        cost.added_ttft_ms = g_ttft - ref_ttft
    for attr, key in (("throughput_ratio", "output_throughput"), ("request_throughput_ratio", "request_throughput")):
        mine = _metric(g, key)
        refs = [_metric(leg.direct, key) for leg in cost.legs if leg.direct is not None]
        if mine is None or any(r is None or r <= 0 for r in refs):
            continue
        ref = sum(leg.share * r for leg, r in zip(cost.legs, refs, strict=True) if r is not None)
        setattr(cost, attr, mine / ref)
    return cost


def annotate(costs: list[Cost]) -> None:
    """The figures into each gateway result: ``engine_stats`` (JSON under the engine's name, HTML's engine rows)
    and ``meta["gateway_compared_with"]`` (JSON)."""
    for c in costs:
        for key in ("added_ttft_ms", "throughput_ratio", "request_throughput_ratio"):
            v = getattr(c, key)
            if v is not None:
                c.gateway.engine_stats[key] = round(v, 4)
        if c.compared_with:
            c.gateway.meta["gateway_compared_with"] = c.compared_with
        if c.why_not:
            c.gateway.meta["gateway_cost_not_computed"] = c.why_not


def table(costs: list[Cost]) -> Any:
    """A rich table: one row per gateway x upstream that served it, with the figures; None when no gateway ran."""
    if not costs:
        return None
    from rich.table import Table
    from rich.text import Text

    t = Table(title="gateway cost (through the gateway vs the upstream measured directly in this run)")
    for col in ("endpoint", "upstream", "share", "TTFT via gw ms", "TTFT direct ms", "added TTFT ms",
                "out tok/s ratio", "req/s ratio"):
        t.add_column(col, overflow="fold")

    def f(v: float | None, fmt: str) -> str:
        return "-" if v is None else fmt.format(v)

    for c in costs:
        if not c.legs:
            t.add_row(Text(c.gateway.label), Text(c.why_not), "", "", "", "", "", "")
            continue
        for i, leg in enumerate(c.legs):
            first = i == 0
            up = f"{leg.direct.label} ({leg.api_base})" if leg.direct is not None else f"{leg.api_base or '?'}"
            t.add_row(Text(c.gateway.label) if first else "", Text(up), f"{100 * leg.share:.0f}%",
                      f"{leg.gateway_ttft_ms:.1f}", f(leg.direct_ttft_ms, "{:.1f}"),
                      f(c.added_ttft_ms, "{:+.1f}") if first else "", f(c.throughput_ratio, "{:.3f}") if first else "",
                      f(c.request_throughput_ratio, "{:.3f}") if first else "")
        if c.why_not:
            t.add_row("", Text(f"no figure: {c.why_not}"), "", "", "", "", "", "")
    return t
