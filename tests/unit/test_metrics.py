from __future__ import annotations

import numpy as np
import pytest

from healthchecks.bench import BenchConfig, arrival_gaps, build_workload
from healthchecks.metrics import RequestResult, calculate, parse_goodput

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
    for bad in ("ttft", "itl:5", "ttft:-1", "ttft:x"):
        with pytest.raises(ValueError):
            parse_goodput(bad)


def test_arrivals_follow_gamma_and_are_reproducible() -> None:
    gaps = arrival_gaps(4000, rate=10.0, burstiness=1.0, seed=3)
    assert np.mean(gaps) == pytest.approx(0.1, rel=0.05)
    assert gaps == arrival_gaps(4000, 10.0, 1.0, 3) and gaps != arrival_gaps(4000, 10.0, 1.0, 4)
    bursty = arrival_gaps(4000, rate=10.0, burstiness=0.25, seed=3)
    assert np.mean(bursty) == pytest.approx(0.1, rel=0.1) and np.std(bursty) > 1.5 * np.std(gaps)
    assert arrival_gaps(3, float("inf"), 1.0, 0) == [0.0, 0.0, 0.0]


def test_random_workload_lengths_and_seed() -> None:
    cfg = BenchConfig(num_prompts=50, input_len=20, range_ratio=0.5, seed=1)
    prompts = build_workload(cfg)
    lens = [len(p.split()) for p in prompts]
    assert min(lens) >= 10 and max(lens) <= 30 and len(set(lens)) > 5
    assert prompts == build_workload(cfg)
