"""The gateway engine's reading of LiteLLM's replies, against replies captured from the REAL LiteLLM 1.110.2 proxy
(tests/fixtures/gateway/capture.py: a live llama-server upstream and one whose port nothing listens on), and the
gateway-cost figure (gateway_cost.py) over benchmark results."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from healthchecks import gateway_cost
from healthchecks.bench import EndpointResult
from healthchecks.engines import ENGINES, NAMES
from healthchecks.engines import gateway as gw
from healthchecks.errors import ProtocolError
from healthchecks.metrics import RequestResult
from healthchecks.verdicts import FAIL, PASS

pytestmark = pytest.mark.unit
FIX = Path(__file__).resolve().parent.parent / "fixtures" / "gateway"
ENGINE = ENGINES["gateway"]


def reply(name: str) -> tuple[int, Any]:
    doc = json.loads((FIX / name).read_text())
    return doc["status"], doc["body"]


def test_registered_and_recognised_by_its_liveliness_probe() -> None:
    assert isinstance(ENGINE, gw.Gateway)
    assert NAMES.index("gateway") < NAMES.index("openai")  # before the generic server, which any /v1/models fits
    status, body = reply("liveliness.json")
    assert ENGINE.probe_path == "/health/liveliness"
    assert ENGINE.recognise(status, json.dumps(body)) is True
    for other in ((200, '{"version":"0.32.0"}'), (404, '{"detail":"Not Found"}'), (200, '{"data":[]}')):
        assert ENGINE.recognise(*other) is False


def test_health_reply_healthy_and_unhealthy_upstreams() -> None:
    status, body = reply("health.json")
    assert status == 200
    states = gw.parse_health(body)
    assert [(s.healthy, s.api_base, s.model) for s in states] == [
        (True, "http://127.0.0.1:8080/v1", "openai/smollm2:135m"),
        (False, "http://127.0.0.1:8000/v1", "hosted_vllm/smollm2:135m")]
    assert states[0].error == ""
    assert "Cannot connect to host 127.0.0.1:8000" in states[1].error and "\n" not in states[1].error
    assert all(len(s.id) == 64 for s in states)  # model_info.id, which /model/info names too


def test_health_reply_of_another_shape_is_one_protocol_error() -> None:
    bodies: list[Any] = [{"detail": "x"}, [], {"healthy_endpoints": [], "unhealthy_endpoints": None}, "I'm alive!"]
    for body in bodies:
        with pytest.raises(ProtocolError, match="healthy_endpoints"):
            gw.parse_health(body)
    # a non-admin key sees no api_base; entries that are not objects are left out
    states = gw.parse_health({"healthy_endpoints": [{"model": "m", "model_id": "1"}, 3], "unhealthy_endpoints": []})
    assert [(s.model, s.api_base, s.id) for s in states] == [("m", "", "1")]


def test_model_info_lists_each_routes_upstream_and_links_health_by_id() -> None:
    _, body = reply("model_info.json")
    deps = gw.parse_model_info(body)
    assert [(d.route, d.model, d.api_base, d.where) for d in deps] == [
        ("smollm2:135m", "openai/smollm2:135m", "http://127.0.0.1:8080/v1", "127.0.0.1:8080"),
        ("smollm2-down", "hosted_vllm/smollm2:135m", "http://127.0.0.1:8000/v1", "127.0.0.1:8000")]
    states = gw.parse_health(reply("health.json")[1])
    assert {d.id for d in deps} == {s.id for s in states}
    assert "api_key" not in json.dumps(body)  # LiteLLM never shows upstream keys here: nothing to hide
    routes = gw.Routes([d.route for d in deps], deps)
    assert routes.by_id(states[1].id) == deps[1] and routes.of("smollm2-down") == [deps[1]]
    assert gw.parse_model_info({"data": [{"model_name": 3}, "x", {"model_name": "m"}]}) == [
        gw.Deployment("m", "", "", "")]


def test_readiness() -> None:
    assert gw.readiness_verdict(*reply("readiness.json")) == ""
    assert gw.readiness_verdict(503, {"status": "shutting_down"}) == "GET /health/readiness 503: status 'shutting_down'"
    assert "database disconnected" in gw.readiness_verdict(503, {"status": "healthy", "db": "disconnected"})
    assert "no status field" in gw.readiness_verdict(200, ["x"])


def test_made_up_and_missing_keys_refused_an_open_gateway_fails() -> None:
    status, body = reply("made_up_key.json")  # LiteLLM without a database: 400 no_db_connection
    assert gw.refused(status, json.dumps(body))[0] == PASS
    status, body = reply("keyless.json")
    assert status == 401 and gw.refused(status, json.dumps(body))[0] == PASS
    verdict = gw.refused(200, '{"choices": []}')
    assert verdict[0] == FAIL and "enforces no key" in verdict[1]
    assert gw.refused(400, '{"error": "bad model"}')[0] == FAIL


def test_route_down_reply_names_the_deployment_by_header_id() -> None:
    status, body = reply("route_down.json")
    assert status == 500 and "Cannot connect" in body["error"]["message"]
    # LiteLLM redacts the host in this answer: the route row names the upstream from /model/info instead
    assert "127.0.0.1" not in body["error"]["message"]


def test_stream_headers_say_who_answered_retries_and_overhead() -> None:
    h = httpx.Headers(json.loads((FIX / "stream_headers.json").read_text()))
    assert h[gw.H_API_BASE] == "http://127.0.0.1:8080/v1" and h[gw.H_VERSION] == "1.110.2"
    assert gw._count(h, gw.H_RETRIES) == 0 and gw._count(h, gw.H_FALLBACKS) == 0
    overhead = gw._ms(h, gw.H_OVERHEAD)
    assert overhead is not None and overhead >= 0
    assert gw._ms(httpx.Headers({gw.H_OVERHEAD: "nan"}), gw.H_OVERHEAD) is None
    assert gw._count(httpx.Headers({gw.H_RETRIES: "x"}), gw.H_RETRIES) == 0


def test_summarise_counts_retries_fallbacks_and_the_median_overhead() -> None:
    ok = [RequestResult(success=True, engine_stats={"retries": 1, "fallbacks": 0, "overhead_ms": 3.0}),
          RequestResult(success=True, engine_stats={"retries": 0, "fallbacks": 2, "overhead_ms": 5.0}),
          RequestResult(success=True, engine_stats={"retries": 0, "fallbacks": 0, "overhead_ms": 40.0})]
    assert ENGINE.summarise(ok) == {"retries": 1.0, "fallbacks": 2.0, "overhead_ms_median": 5.0}


# -- the gateway's cost ------------------------------------------------------------------------------------------
def result(label: str, engine: str, url: str, ttfts: list[float], tput: float,
           served_by: list[str | None] | None = None) -> EndpointResult:
    r = EndpointResult(label, engine, url, "smollm2:135m", "chat", len(ttfts))
    r.requests = [RequestResult(success=True, ttft=t, served_by=(served_by or [None] * len(ttfts))[i])
                  for i, t in enumerate(ttfts)]
    ordered = sorted(ttfts)
    r.metrics = {"completed": len(ttfts), "median_ttft_ms": 1000 * ordered[len(ordered) // 2],
                 "output_throughput": tput, "request_throughput": tput / 10}
    return r


def test_cost_against_the_one_upstream_measured_directly() -> None:
    direct = result("vllm@127.0.0.1:8000", "vllm", "http://127.0.0.1:8000", [0.100, 0.100, 0.100], 200.0)
    other = result("llamacpp@127.0.0.1:8080", "llamacpp", "http://127.0.0.1:8080", [0.050] * 3, 400.0)
    g = result("gateway@127.0.0.1:4000", "gateway", "http://127.0.0.1:4000", [0.130, 0.120, 0.125], 180.0,
               ["http://localhost:8000/v1"] * 3)
    [cost] = gateway_cost.compare([g], [direct, other])
    assert cost.why_not == "" and cost.compared_with == "vllm@127.0.0.1:8000"
    assert cost.added_ttft_ms == pytest.approx(25.0)
    assert cost.throughput_ratio == pytest.approx(0.9) and cost.request_throughput_ratio == pytest.approx(0.9)
    gateway_cost.annotate([cost])
    assert g.engine_stats == {"added_ttft_ms": 25.0, "throughput_ratio": 0.9, "request_throughput_ratio": 0.9}
    assert g.meta == {"gateway_compared_with": "vllm@127.0.0.1:8000"}
    assert gateway_cost.table([cost]) is not None


def test_cost_weighted_over_load_balanced_upstreams_and_compose_service_names() -> None:
    a = result("vllm", "vllm", "http://127.0.0.1:8000", [0.100] * 3, 100.0)
    b = result("llamacpp", "llamacpp", "http://127.0.0.1:8080", [0.200] * 3, 300.0)
    # inside compose the gateway reaches the engines by service name
    g = result("gateway", "gateway", "http://127.0.0.1:4000", [0.110, 0.110, 0.210, 0.210], 220.0,
               ["http://vllm:8000/v1", "http://vllm:8000/v1", "http://llamacpp:8080/v1", "http://llamacpp:8080/v1"])
    [cost] = gateway_cost.compare([g], [a, b])
    assert [(leg.share, leg.direct) for leg in cost.legs] == [(0.5, a), (0.5, b)]
    assert cost.added_ttft_ms == pytest.approx(210.0 - 150.0)  # median of the gateway vs the weighted medians
    assert cost.throughput_ratio == pytest.approx(220.0 / 200.0)


def test_no_figure_without_the_upstream_in_the_run_or_without_the_header() -> None:
    direct = result("vllm", "vllm", "http://127.0.0.1:8000", [0.1] * 2, 100.0)
    g = result("gateway", "gateway", "http://127.0.0.1:4000", [0.2] * 2, 90.0, ["http://10.0.0.9:8000/v1"] * 2)
    [cost] = gateway_cost.compare([g], [direct])
    assert cost.added_ttft_ms is None and "not measured directly in this run: http://10.0.0.9:8000/v1" in cost.why_not
    g = result("gateway", "gateway", "http://127.0.0.1:4000", [0.2] * 2, 90.0)
    [cost] = gateway_cost.compare([g], [direct])
    assert cost.throughput_ratio is None and "x-litellm-model-api-base" in cost.why_not
    g.requests = [RequestResult(error="boom")]
    [cost] = gateway_cost.compare([g], [direct])
    assert cost.why_not == "no completed request through the gateway" and not cost.legs
    gateway_cost.annotate([cost])
    assert g.meta["gateway_cost_not_computed"] == cost.why_not and g.engine_stats == {}


def test_views_only_when_a_gateway_ran() -> None:
    direct = result("vllm", "vllm", "http://127.0.0.1:8000", [0.1], 100.0)
    assert ENGINE.views([direct]) == []
    g = result("gateway", "gateway", "http://127.0.0.1:4000", [0.15], 90.0, ["http://127.0.0.1:8000/v1"])
    assert len(ENGINE.views([direct, g])) == 1 and g.engine_stats["added_ttft_ms"] == pytest.approx(50.0)
