"""smoke-bench's argv: every number, file and API checked before the first request; one line, exit 2."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from healthchecks.cli.smoke_bench import bench_parser, config_from_args

pytestmark = pytest.mark.unit
BIN = Path(sys.executable).parent
NOWHERE = "vllm=http://127.0.0.1:9"  # nothing listens: any request would fail, not exit 2


def cfg(*argv: str):  # type: ignore[no-untyped-def]
    return config_from_args(bench_parser().parse_args([NOWHERE, "--num-prompts", "4", *argv]))


def run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN / "smoke-bench"), *argv], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "COLUMNS": "200"})


def test_vllm_flag_names_and_aliases() -> None:
    c = cfg("--max-concurrency", "3", "--num-warmups", "2", "--goodput", "ttft:500", "tpot:50",
            "--percentile-metrics", "ttft,e2el", "--metric-percentiles", "50,99.9", "--temperature", "0.7",
            "--top-p", "0.9", "--extra-body", '{"min_tokens": 4}', "--header", "X-A=1", "--header", "X-B=2=3",
            "--burstiness", "inf", "--request-rate", "2.5", "--random-input-len", "20", "--random-range-ratio", "0.2")
    assert (c.max_concurrency, c.num_warmups, c.goodput) == (3, 2, {"ttft": 500.0, "tpot": 50.0})
    assert c.percentile_metrics == ("ttft", "e2el") and c.metric_percentiles == (50.0, 99.9)
    assert (c.temperature, c.top_p, c.extra_body) == (0.7, 0.9, {"min_tokens": 4})
    assert c.headers == {"X-A": "1", "X-B": "2=3"} and c.burstiness == float("inf")
    assert (c.spec.input_len, c.spec.range_ratio) == (20, 0.2)
    old = cfg("--concurrency", "3", "--warmups", "2", "--goodput", "ttft:500,tpot:50", "--input-len", "20")
    assert (old.max_concurrency, old.num_warmups, old.goodput) == (3, 2, {"ttft": 500.0, "tpot": 50.0})
    assert cfg().eos_ignored is True  # random prompts run to their length, as in vLLM
    assert cfg("--no-ignore-eos").eos_ignored is False
    assert cfg("--num-prompts", "1e3").num_prompts == 1000
    assert cfg("--sweep").goodput == {"ttft": 2000.0, "tpot": 100.0}  # the stated default SLOs


def test_settings_hide_header_values() -> None:
    s = cfg("--header", "Authorization=Bearer sk-secret").settings()
    assert s["headers"] == ["Authorization"] and "sk-secret" not in str(s)


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--request-rate", "nan"], "'nan' is not a number"),
        (["--request-rate", "0"], "must be greater than 0"),
        (["--burstiness", "nan"], "'nan' is not a number"),
        (["--burstiness", "-1"], "must be greater than 0"),
        (["--num-prompts", "1.5"], "not a whole number"),
        (["--num-prompts", "inf"], "not a whole number"),
        (["--range-ratio", "1"], "must be in [0, 1)"),
        (["--range-ratio", "nan"], "'nan' is not a number"),
        (["--max-seconds", "inf", "--sweep"], "finite number of seconds"),
        (["--max-seconds", "10"], "--max-seconds bounds a --sweep"),
        (["--request-timeout", "nan"], "'nan' is not a number"),
        (["--temperature", "inf"], "finite number >= 0"),
        (["--top-p", "0"], "must be in (0, 1]"),
        (["--num-warmups", "-1"], "whole number >= 0"),
        (["--goodput", "ttft:nan"], "finite number >= 0"),
        (["--goodput", "itl:5"], "expected ttft:MS"),
        (["--percentile-metrics", "ttft,latency"], "--percentile-metrics latency"),
        (["--metric-percentiles", "0"], "must be in (0, 100]"),
        (["--extra-body", "{bad"], "--extra-body is not JSON"),
        (["--extra-body", "[1]"], "must be a JSON object"),
        (["--header", "novalue"], "expected KEY=VALUE"),
        (["--ramp-up-strategy", "linear"], "needs --ramp-up-start-rps"),
        (["--ramp-up-strategy", "linear", "--ramp-up-start-rps", "1", "--ramp-up-end-rps", "2",
          "--request-rate", "3"], "do not give --request-rate"),
        (["--ramp-up-strategy", "exponential", "--ramp-up-start-rps", "0", "--ramp-up-end-rps", "2"],
         "cannot start at 0"),
        (["--ramp-up-start-rps", "1"], "need --ramp-up-strategy"),
        (["--input-len", "1", "--range-ratio", "0.5"], "allows prompts of 0 tokens"),
        (["--dataset-name", "custom"], "needs --dataset-path"),
        (["--dataset-path", "/nonexistent.jsonl"], "No such file"),
        (["--dataset-name", "prefix_repetition", "--num-prefixes", "8"], "must be at least --num-prefixes"),
        (["--tokenizer", "/nonexistent/tokenizer.json"], "--tokenizer /nonexistent/tokenizer.json"),
        (["--api", "ollama"], "--api ollama is not served by vllm@127.0.0.1:9"),
    ],
)
def test_bad_values_exit_2_naming_the_flag(args: list[str], needle: str) -> None:
    t0 = time.perf_counter()
    r = run(NOWHERE, "--num-prompts", "4", *args)
    assert r.returncode == 2, r.stderr
    assert needle in r.stderr and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    assert time.perf_counter() - t0 < 20  # refused before any request (nothing listens on port 9)


def test_output_paths_checked_before_the_run(tmp_path: Path) -> None:
    folder = tmp_path / "adir"
    folder.mkdir()
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    afile = tmp_path / "afile"
    afile.write_text("x")
    cases = [(["--json", str(folder)], "is a directory"), (["--plot", str(tmp_path / "p.txt")], "ending in .png"),
             (["--html", str(afile / "r.html")], f"{afile} is not a directory")]
    if os.geteuid() != 0:  # root writes anywhere
        cases.append((["--json", str(locked / "sub" / "r.json")], "cannot write in"))
    for args, needle in cases:
        r = run(NOWHERE, "--num-prompts", "2", *args)
        assert r.returncode == 2 and needle in r.stderr, (args, r.stderr)
    assert not (folder / "r.json").exists()


def test_api_checked_for_every_endpoint_before_any_request(tmp_path: Path) -> None:
    """A mixed list with --api ollama: a usage error naming the endpoint, whatever its place in the list."""
    r = run("ollama=http://127.0.0.1:9", "llamacpp=http://127.0.0.1:9", "--num-prompts", "2", "--api", "ollama",
            "--json", str(tmp_path / "r.json"))
    assert r.returncode == 2 and "llamacpp@127.0.0.1:9" in r.stderr and "refused" not in r.stderr
    assert not (tmp_path / "r.json").exists()
