"""The server-metrics reader (issue 22 item 6): Prometheus text exposition as vLLM (prometheus_client) and
llama-server write it, summed over label sets; gauges and hit rates from counters over a run; the inline SVG
chart of the HTML report. The real servers' answers are read in tests/integration/test_smoke_bench_server.py."""

from __future__ import annotations

import math

import pytest

from healthchecks.html_report import svg_chart
from healthchecks.server_metrics import ServerMetric, ServerSeries, cell, parse, wanted

pytestmark = pytest.mark.unit

# the shape prometheus_client writes for vLLM: HELP/TYPE lines, labels, counters with _total and _created
VLLM_TEXT = """# HELP vllm:num_requests_running Number of requests in model execution batches.
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{engine="0",model_name="smollm2:135m"} 3.0
vllm:num_requests_running{engine="1",model_name="smollm2:135m"} 1.0
vllm:num_requests_running_extra{engine="0"} 99.0
vllm:num_requests_waiting{engine="0",model_name="a}b {c"} 2.0 1712345678000
vllm:kv_cache_usage_perc{engine="0",model_name="smollm2:135m"} NaN
# TYPE vllm:prefix_cache_hits counter
vllm:prefix_cache_hits_total{engine="0",model_name="smollm2:135m"} 128.0
vllm:prefix_cache_hits_created{engine="0",model_name="smollm2:135m"} 1.7e+09
vllm:prefix_cache_queries_total{engine="0",model_name="smollm2:135m"} 512.0
broken line
vllm:num_requests_waiting{engine="1"} notanumber
"""
TABLE = (
    ServerMetric("running", "requests running", series=("vllm:num_requests_running",)),
    ServerMetric("waiting", "requests waiting", series=("vllm:num_requests_waiting",)),
    ServerMetric("kv_cache", "KV-cache usage", series=("vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc"),
                 scale=100.0, unit="%"),
    ServerMetric("hits", "prefix-cache hit rate", unit="%", hits=("vllm:prefix_cache_hits_total",),
                 queries=("vllm:prefix_cache_queries_total",)),
)


def test_parse_sums_label_sets_and_skips_what_is_not_a_sample() -> None:
    raw = parse(VLLM_TEXT, wanted(TABLE))
    assert raw == {"vllm:num_requests_running": 4.0, "vllm:num_requests_waiting": 2.0,
                   "vllm:prefix_cache_hits_total": 128.0, "vllm:prefix_cache_queries_total": 512.0}
    # llama-server writes no labels
    assert parse("# TYPE llamacpp:requests_processing gauge\nllamacpp:requests_processing 2\n",
                 frozenset({"llamacpp:requests_processing"})) == {"llamacpp:requests_processing": 2.0}


def test_series_gauges_peak_and_mean_and_the_hit_rate_over_the_run() -> None:
    s = ServerSeries(TABLE, "GET /metrics")
    s.add(0.0, {"vllm:num_requests_running": 0, "vllm:kv_cache_usage_perc": 0.1,
                "vllm:prefix_cache_hits_total": 100, "vllm:prefix_cache_queries_total": 400})
    s.add(1.0, {"vllm:num_requests_running": 4, "vllm:kv_cache_usage_perc": 0.5,
                "vllm:prefix_cache_hits_total": 100, "vllm:prefix_cache_queries_total": 500})
    s.add(2.0, {"vllm:num_requests_running": 2, "vllm:gpu_cache_usage_perc": 0.3,
                "vllm:prefix_cache_hits_total": 400, "vllm:prefix_cache_queries_total": 900})
    m = s.summary()
    assert (m["running"]["peak"], m["running"]["mean"]) == (4, 2)
    assert m["kv_cache"]["peak"] == 50.0 and m["kv_cache"]["mean"] == pytest.approx(30.0)
    # the run: 300 hits of 500 queried tokens; per interval 0/100 and 300/400
    assert m["hits"]["run"] == 60.0 and (m["hits"]["hits"], m["hits"]["queries"]) == (300, 500)
    assert [x.get("hits") for x in s.samples] == [None, 0.0, 75.0]
    assert m["waiting"]["peak"] is None and m["waiting"]["note"] == "not exposed (vllm:num_requests_waiting)"
    assert cell(m["running"]) == "4.00 / 2.00" and cell(m["hits"]) == "60.0" and cell(m["waiting"]) == "-"


def test_a_hit_rate_with_nothing_queried_is_no_figure() -> None:
    s = ServerSeries(TABLE[3:], "GET /metrics")
    for t in (0.0, 1.0):
        s.add(t, {"vllm:prefix_cache_hits_total": 0, "vllm:prefix_cache_queries_total": 7})
    assert s.summary()["hits"]["run"] is None and s.samples[1] == {"t": 1.0, "hits": None}


def test_svg_chart_is_inline_and_scales_to_the_data() -> None:
    svg = svg_chart("requests <running>", "", [("vllm", "#1f77b4", [(0.0, 0.0), (2.0, 4.0)], False),
                                                ("one", "#d62728", [(1.0, 1.0)], True)])
    assert svg.startswith("<svg ") and svg.endswith("</svg>") and "<script" not in svg
    assert "requests &lt;running&gt;" in svg and "<polyline" in svg and "<circle" in svg
    assert ">2.0 s<" in svg and ">4<" in svg
    pts = svg.split('points="')[1].split('"')[0].split()
    assert len(pts) == 2 and all(not math.isnan(float(c)) for p in pts for c in p.split(","))
