from __future__ import annotations

import asyncio
import itertools

import numpy as np
import pytest

from healthchecks.bench import send_times
from healthchecks.metrics import RequestResult, calculate, parse_goodput, peak_per_second
from healthchecks.workload import WorkloadSpec

pytestmark = pytest.mark.unit


def test_hand_computed_example() -> None:
    a = RequestResult(success=True, ttft=0.1, latency=0.5, itl=[0.2, 0.2], output_tokens=3, prompt_tokens=10)
    b = RequestResult(success=True, ttft=0.3, latency=0.3, itl=[], output_tokens=1, prompt_tokens=5)
    c = RequestResult(success=False, error="boom")
    m = calculate([a, b, c], duration=2.0, goodput={"ttft": 200})
    assert (m["completed"], m["failed"], m["total_input_tokens"], m["total_output_tokens"]) == (2, 1, 15, 4)
    assert m["mean_tpot_ms"] == pytest.approx(200.0)  # only a: (0.5-0.1)/(3-1); b has one token
    assert m["median_ttft_ms"] == pytest.approx(200.0)
    assert m["mean_itl_ms"] == pytest.approx(200.0)
    assert m["p99_e2el_ms"] == pytest.approx(np.percentile([0.5, 0.3], 99) * 1000)
    assert m["request_throughput"] == 1.0 and m["output_throughput"] == 2.0 and m["total_token_throughput"] == 9.5
    assert m["request_goodput"] == 0.5  # a meets ttft<=200ms, b does not


def test_usage_missing_falls_back_to_chunks() -> None:
    r = RequestResult(success=True, ttft=0.1, latency=0.4, itl=[0.1] * 3, output_tokens=None, chunks=4)
    m = calculate([r], 1.0)
    assert m["total_output_tokens"] == 4 and m["output_tokens_estimated"] == 1


def test_all_failed_is_zeros_not_a_crash() -> None:
    m = calculate([RequestResult(error="x")] * 3, 1.0)
    assert m["completed"] == 0 and m["mean_ttft_ms"] == 0.0 and m["request_goodput"] is None


def test_goodput_parse() -> None:
    assert parse_goodput("ttft:500, tpot:50,e2el:3000") == {"ttft": 500.0, "tpot": 50.0, "e2el": 3000.0}
    assert parse_goodput(["ttft:500", "tpot:50"]) == {"ttft": 500.0, "tpot": 50.0}  # vLLM's nargs="+"
    for bad in ("ttft", "itl:5", "ttft:-1", "ttft:x", "ttft:nan", "ttft:inf"):
        with pytest.raises(ValueError):
            parse_goodput(bad)


def arrival_gaps(n: int, rate: float, burstiness: float, seed: int) -> list[float]:
    """The waits between successive sends of ``send_times`` (the first is the wait before the first request)."""
    times = send_times(n, rate, burstiness, seed)
    return [t - (times[i - 1] if i else 0.0) for i, t in enumerate(times)]


def test_arrivals_follow_gamma_and_are_reproducible() -> None:
    gaps = arrival_gaps(4000, rate=10.0, burstiness=1.0, seed=3)
    assert np.mean(gaps) == pytest.approx(0.1, rel=1e-9)  # rescaled: the last send is at exactly N/R
    assert gaps == arrival_gaps(4000, 10.0, 1.0, 3) and gaps != arrival_gaps(4000, 10.0, 1.0, 4)
    bursty = arrival_gaps(4000, rate=10.0, burstiness=0.25, seed=3)
    assert np.std(bursty) > 1.5 * np.std(gaps)
    assert arrival_gaps(3, float("inf"), 1.0, 0) == [0.0, 0.0, 0.0]


@pytest.mark.parametrize("seed", [0, 1, 7])
def test_last_request_leaves_at_n_over_r(seed: int) -> None:
    """vLLM rescales the summed gaps so that the offered load is exactly R (serve.py, get_request)."""
    times = send_times(40, 4.0, 1.0, seed)
    assert times[-1] == pytest.approx(10.0, rel=1e-12)
    assert times[0] > 0 and all(b >= a for a, b in itertools.pairwise(times))


def test_burstiness_inf_is_constant_gaps() -> None:
    assert send_times(4, 2.0, float("inf"), 0) == pytest.approx([0.5, 1.0, 1.5, 2.0])


def test_ramp_up_rates_are_not_rescaled() -> None:
    times = send_times(5, float("inf"), float("inf"), 0, ("linear", 1.0, 5.0))
    assert times == pytest.approx([1.0, 1.5, 1.8333333, 2.0833333, 2.2833333], rel=1e-6)


def test_peak_tokens_and_concurrency_per_second() -> None:
    """vLLM's max_output_tokens_per_s / max_concurrent_requests on a hand example."""
    a = RequestResult(success=True, start_time=10.0, ttft=0.2, itl=[0.3, 0.3, 0.3], latency=1.1, output_tokens=4)
    b = RequestResult(success=True, start_time=10.5, ttft=0.1, itl=[0.1], latency=0.2, output_tokens=2)
    c = RequestResult(success=True, start_time=12.2, ttft=0.1, itl=[], latency=0.1, output_tokens=1)
    # tokens: a at 0.2, 0.5, 0.8, 1.1 -> buckets 0,0,0,1; b at 0.6, 0.7 -> 0,0; c at 2.3 -> 2
    assert peak_per_second([a, b, c, RequestResult(error="x")]) == (5.0, 2)
    m = calculate([a, b, c], 3.0)
    assert m["max_output_tokens_per_s"] == 5.0 and m["max_concurrent_requests"] == 2


def test_percentile_metrics_select_the_statistics() -> None:
    r = RequestResult(success=True, ttft=0.1, latency=0.3, itl=[0.1, 0.1], output_tokens=3)
    m = calculate([r], 1.0, percentiles=(99.0, 99.9), percentile_metrics=("ttft", "e2el"))
    assert "p99_ttft_ms" in m and "p99.9_e2el_ms" in m and "mean_tpot_ms" not in m and "p99_itl_ms" not in m


def test_random_workload_lengths_and_seed() -> None:
    spec = WorkloadSpec(num_prompts=50, input_len=20, output_len=10, range_ratio=0.5, seed=1)
    reqs = asyncio.run(spec.build(None))
    ins = [len(r.prompt.split()) for r in reqs]
    outs = [r.expected_output_len for r in reqs]
    assert min(ins) >= 10 and max(ins) <= 30 and len(set(ins)) > 5
    assert min(outs) >= 5 and max(outs) <= 15 and len(set(outs)) > 3  # range ratio applies to output too
    assert reqs == asyncio.run(spec.build(None))
