"""Benchmarks that print figures (speed targets are reported, not asserted); they must run cleanly."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))


def test_healthcheck_fanout_50(capsys: pytest.CaptureFixture[str]) -> None:
    from bench_healthcheck_fanout import run

    for delay in (0.01, 0.05):
        figures = run(50, delay)
        assert figures["endpoints"] == 50 and figures["all_at_once_s"] > 0
        with capsys.disabled():
            print("\n", figures)
