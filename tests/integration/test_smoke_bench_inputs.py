"""The real ``smoke-bench`` console script, its output piped as in a log or CI, against the odd-values double
(tests/doubles/odd_server.py run as its own process): bad settings end in one line with exit 2, odd numbers
from a server keep the run (a warning) and a JSON file every strict reader takes, bare-CR SSE is read, the
tables are whole, and a sweep starved by --max-seconds says so."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import free_port, wait_http

pytestmark = pytest.mark.integration
BIN = Path(sys.executable).parent
DOUBLE = Path(__file__).parents[1] / "doubles" / "odd_server.py"
QUICK = ["--model", "m", "--num-prompts", "3", "--input-len", "4", "--output-len", "3", "--no-gpu-sampling"]


@pytest.fixture(scope="module")
def odd() -> Iterator[str]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, str(DOUBLE), str(port)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        assert wait_http(f"{url}/ok/v1/models", 20), "the odd-values double did not start"
        yield url
    finally:
        proc.terminate()
        proc.wait(10)


def bench(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"}  # a pipe with no COLUMNS: rich assumes 80
    r = subprocess.run([str(BIN / "smoke-bench"), *args], capture_output=True, text=True, timeout=120, env=env)
    assert "Traceback" not in r.stdout + r.stderr, r.stderr
    return r


@pytest.mark.parametrize(("args", "needle"), [
    (["--seed", "-1"], "argument --seed: '-1' must be a whole number from 0 to 4294967295"),
    (["--header", "Content-Length=5"], "--header Content-Length: set by the HTTP client itself"),
    (["--header", "X-Token=sk-é"], "--header X-Token: the value must be printable ASCII"),
    (["--extra-body", '{"stream": false}'], "--extra-body key 'stream' is set by smoke-bench"),
    (["--extra-body", '{"temperature": NaN}'], "--extra-body is not JSON: NaN"),
])
def test_bad_settings_exit_2_in_one_line(odd: str, args: list[str], needle: str) -> None:
    r = bench(f"openai={odd}/ok", *QUICK, *args)
    assert r.returncode == 2 and needle in r.stderr, r.stderr
    assert "sk-" not in r.stdout + r.stderr


def test_odd_numbers_keep_every_run_and_the_json_is_strict(odd: str, tmp_path: Path) -> None:
    out = tmp_path / "r.json"
    r = bench(f"openai={odd}/strusage", f"openai={odd}/floatusage", f"ollama={odd}/hugedur",
              f"ollama={odd}/missingcount", f"openai={odd}/cr", *QUICK, "--json", str(out))
    assert r.returncode == 0, r.stderr
    assert "failed:" not in r.stderr
    assert "usage.completion_tokens '3' is not a token count" in r.stderr
    assert "eval_duration 1e+308 is not a duration in ns" in r.stderr
    eps = json.loads(out.read_text(), parse_constant=lambda c: pytest.fail(f"{c} in the JSON"))["endpoints"]
    assert [e["completed"] for e in eps] == [3, 3, 3, 3, 3]
    assert [e["total_output_tokens"] for e in eps] == [9, 9, 6, 6, 9]  # chunks counted where a count was odd


def test_wide_tables_are_whole_in_a_pipe(odd: str) -> None:
    r = bench(*(f"openai={odd}/{m}" for m in ("ok", "crlf", "nospace", "nullusage")), *QUICK)
    assert r.returncode == 0, r.stderr
    assert "…" not in r.stdout
    host = odd.split("//")[1]
    header = next(line for line in r.stdout.splitlines() if host in line)
    assert header.count(f"openai@{host}") == 4, header
    print(f"table width in a pipe: {max(len(x) for x in r.stdout.splitlines())} columns")


def test_sweep_with_a_starved_budget_says_so(odd: str) -> None:
    r = bench(f"openai={odd}/ok", *QUICK, "--sweep", "--max-seconds", "0.0001")
    assert "the time budget (--max-seconds) was too small" in r.stdout, r.stdout
    assert "no load met" not in r.stdout and "…" not in r.stdout
    assert r.returncode == 1


def test_a_detected_bare_url_is_labelled_by_its_engine(faulty_server: str, tmp_path: Path) -> None:
    """A bare URL's label names the engine once detected (it stayed "?@host:port"), as healthcheck's does."""
    out = tmp_path / "b.json"
    r = bench(f"{faulty_server}/ok", "--num-prompts", "2", "--no-gpu-sampling", "--json", str(out))
    assert r.returncode == 0, r.stderr
    port = faulty_server.rsplit(":", 1)[1]
    (e,) = json.loads(out.read_text())["endpoints"]
    assert (e["label"], e["engine"]) == (f"openai@127.0.0.1:{port}", "openai") and "?@" not in r.stdout + r.stderr
