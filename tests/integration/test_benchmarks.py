"""Benchmarks that print figures (speed targets are reported, not asserted); they must run cleanly."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))


def test_healthcheck_fanout_50(capsys: pytest.CaptureFixture[str]) -> None:
    from bench_healthcheck_fanout import run

    # the fast-GPU pace only (0.01 s a token): the 20 tok/s pace (0.05) times 50 single checks one after another,
    # ~80 s more of CI for the same ratio; `python tests/benchmarks/bench_healthcheck_fanout.py` prints both
    for delay in (0.01,):
        figures = run(50, delay)
        assert figures["endpoints"] == 50 and figures["all_at_once_s"] > 0
        with capsys.disabled():
            print("\n", figures)


def test_client_cost_vs_vllm_bench_serve(capsys: pytest.CaptureFixture[str]) -> None:
    """The client's own cost on a static SSE server (nginx when installed): smoke-bench's chunk rate beside
    `vllm bench serve`'s, printed (the goal, >= 1.0x, is a figure to read, not an assertion)."""
    from bench_client_cost import run

    figures = run(requests=1000, chunks=256, concurrency=16, vllm_startup=False)
    assert figures["smoke_bench"]["chunks_per_s"] > 0 and figures["smoke_bench"]["startup_s"] > 0
    with capsys.disabled():
        print("\n", figures)
