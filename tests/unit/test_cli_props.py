"""Property tests: any argv to ``healthcheck`` and ``smoke-bench`` parses, or ends in argparse's exit 2
(``--help``/``--version``: exit 0) with one line; parsed settings resolve to endpoints or one ConfigError.
Nothing else escapes. (--compose and --inventory read files and run ansible-inventory: their own tests.)"""

from __future__ import annotations

import argparse
import contextlib
import io

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from healthchecks.cli.endpoint_args import resolve_endpoints
from healthchecks.cli.healthcheck import healthcheck_parser
from healthchecks.cli.smoke_bench import bench_parser
from healthchecks.errors import ConfigError

pytestmark = pytest.mark.unit

FLAGS = ["--model", "--timeout", "--api-key-file", "--ca-bundle", "--insecure", "--group", "--host", "--wait",
         "--json", "--max-tokens", "--expect-gpu", "--no-expect-gpu", "--junit", "--prometheus", "--num-prompts",
         "--request-rate", "--burstiness", "--max-concurrency", "--concurrency", "--seed", "--api", "--help",
         "--version", "--bogus", "-x", "--"]
VALUES = ["nan", "inf", "-inf", "1e3", "1.5", "0", "-1", "10", "1e400", "", " ", "x", "vllm=m", "ollama=",
          "=x", "tgi=x", "vllm=http://127.0.0.1:1", "http://127.0.0.1:1", "http://[::1]:1", "https://h:0",
          "ftp://h", "localhost:8000", "http://h:99999", "vllm=", "/nonexistent", "/dev/null", "é", "\x00"]
argv = st.lists(st.sampled_from(FLAGS) | st.sampled_from(VALUES) | st.text(max_size=12), max_size=8)


def _parse(parser: argparse.ArgumentParser, args: list[str]) -> argparse.Namespace | None:
    errbuf = io.StringIO()
    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(errbuf):
            return parser.parse_args(args)
    except SystemExit as exc:
        assert exc.code in (0, 2), exc.code
        return None


@settings(max_examples=300, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(argv, st.sampled_from(["healthcheck", "smoke-bench"]))
def test_any_argv(args: list[str], cli: str) -> None:
    parser = healthcheck_parser() if cli == "healthcheck" else bench_parser()
    ns = _parse(parser, args)
    if ns is None:
        return
    ns.compose = ns.inventory = None  # not exercised here
    try:
        with contextlib.redirect_stderr(io.StringIO()):
            eps = resolve_endpoints(ns)
    except ConfigError as exc:
        assert exc.reason and "\n" not in exc.reason
        return
    assert eps and all(e.url.startswith(("http://", "https://")) for e in eps)
