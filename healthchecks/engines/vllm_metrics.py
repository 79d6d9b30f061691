"""vLLM's Prometheus series that smoke-bench watches during a run (issue 22 item 6), by the names the pinned
vLLM (0.32.0, ``vllm/v1/metrics/loggers.py``, ``PrometheusStatLogger``) registers:

- ``vllm:num_requests_running`` (gauge): "Number of requests in model execution batches."
- ``vllm:num_requests_waiting`` (gauge): "Number of requests waiting to be processed."
- ``vllm:kv_cache_usage_perc`` (gauge): "KV-cache usage. 1 means 100 percent usage." (``vllm:gpu_cache_usage_perc``
  in vLLM before the V1 engine, still read when a server exposes only that one)
- ``vllm:prefix_cache_queries`` / ``vllm:prefix_cache_hits`` (counters, in tokens: queried and cached), exposed
  by prometheus_client with the ``_total`` suffix every counter sample carries.

Kept here, beside engines/vllm.py rather than in it, while that module is being changed for the diagnosis; the
engine's ``metric_table()`` reads :data:`TABLES` for engines whose module does not set ``server_metrics``."""

from __future__ import annotations

from ..server_metrics import ServerMetric

VLLM_METRICS: tuple[ServerMetric, ...] = (
    ServerMetric("running", "requests running", series=("vllm:num_requests_running",)),
    ServerMetric("waiting", "requests waiting", series=("vllm:num_requests_waiting",)),
    ServerMetric("kv_cache", "KV-cache usage", series=("vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc"),
                 scale=100.0, unit="%"),
    ServerMetric("prefix_cache_hits", "prefix-cache hit rate (prompt tokens)", unit="%",
                 hits=("vllm:prefix_cache_hits_total",), queries=("vllm:prefix_cache_queries_total",)),
)

TABLES: dict[str, tuple[ServerMetric, ...]] = {"vllm": VLLM_METRICS}
