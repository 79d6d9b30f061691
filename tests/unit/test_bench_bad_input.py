"""smoke-bench with bad settings and odd servers, through ``cli.smoke_bench.main``: one line, the right exit code, never
a traceback, no secret, and no endpoint's result lost to another's surprise. The server is the odd-values
double (tests/doubles/odd_server.py) in a thread."""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpcore
import pytest
from doubles.odd_server import serve

from healthchecks import fastnet, report
from healthchecks.cli import smoke_bench
from healthchecks.engines import base
from healthchecks.metrics import token_count

pytestmark = pytest.mark.unit
QUICK = ["--model", "m", "--num-prompts", "2", "--input-len", "4", "--output-len", "3", "--no-gpu-sampling"]


@pytest.fixture(scope="module")
def odd() -> Iterator[str]:
    server = serve()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


@pytest.fixture(autouse=True)
def no_columns(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("COLUMNS", raising=False)


def bench(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    try:
        rc = smoke_bench.main(list(argv))
    except SystemExit as exc:  # argparse's own usage errors
        rc = int(exc.code or 0)
    cap = capsys.readouterr()
    assert "Traceback" not in cap.out + cap.err
    return rc, cap.out, cap.err


def last_line(text: str) -> str:
    return [x for x in text.splitlines() if x.strip()][-1]


# -- settings: exit 2, one line naming the flag ----------------------------------------------------------------
@pytest.mark.parametrize("value", ["-1", "4294967296", "5000000000", "1.5"])
def test_seed_outside_numpys_range_is_a_usage_error(capsys: pytest.CaptureFixture[str], odd: str,
                                                      value: str) -> None:
    rc, _, err = bench(capsys, f"openai={odd}/ok", *QUICK, "--seed", value)
    assert rc == 2 and "--seed" in last_line(err)


def test_seed_range_ends_are_accepted(capsys: pytest.CaptureFixture[str], odd: str) -> None:
    for value in ("0", "4294967295"):
        rc, _, err = bench(capsys, f"openai={odd}/ok", *QUICK, "--seed", value)
        assert rc == 0, err


@pytest.mark.parametrize(("body", "needle"), [
    ('{"stream": false}', "'stream' is set by smoke-bench"),
    ('{"model": "other"}', "'model' is set by smoke-bench"),
    ('{"max_tokens": 3}', "'max_tokens' is set by smoke-bench (use --output-len)"),
    ('{"prompt": "x"}', "'prompt' is set by smoke-bench"),
    ('{"options": {"num_predict": 9}}', "'options.num_predict'"),
    ('{"x": NaN}', "NaN is not valid JSON"),
    ('{"x": -Infinity}', "-Infinity is not valid JSON"),
    ('{"x": 1e999}', "1e999 is out of range"),
    ("[1, 2]", "must be a JSON object"),
    ("[" * 100000, "--extra-body"),
])
def test_extra_body_keys_the_kit_sets_and_non_json_numbers_exit_2(capsys: pytest.CaptureFixture[str], odd: str,
                                                                   body: str, needle: str) -> None:
    rc, _out, err = bench(capsys, f"openai={odd}/ok", *QUICK, "--extra-body", body)
    assert rc == 2 and "--extra-body" in last_line(err) and needle in last_line(err), err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_extra_body_sampling_keys_reach_the_server(capsys: pytest.CaptureFixture[str], odd: str) -> None:
    rc, _, err = bench(capsys, f"openai={odd}/ok", *QUICK, "--extra-body", '{"min_tokens": 2, "top_k": 5}')
    assert rc == 0, err


@pytest.mark.parametrize(("header", "needle"), [
    ("X-Key=sk-séc", "--header X-Key: the value must be printable ASCII"),
    ("X-Key=sk-sec\nret", "--header X-Key: the value must be printable ASCII"),
    ("X-Key=sk-sec\rret", "--header X-Key: the value must be printable ASCII"),
    ("X Key=1", "not a valid header name"),
    ("X:Key=1", "not a valid header name"),
    ("Content-Length=5", "--header Content-Length: set by the HTTP client itself"),
    ("transfer-encoding=chunked", "set by the HTTP client itself"),
    ("Host=evil", "set by the HTTP client itself"),
    ("=1", "expected KEY=VALUE"),
    ("NoValue", "expected KEY=VALUE"),
])
def test_bad_headers_exit_2_without_showing_the_value(capsys: pytest.CaptureFixture[str], odd: str,
                                                      header: str, needle: str) -> None:
    rc, out, err = bench(capsys, f"openai={odd}/ok", *QUICK, "--header", header)
    assert rc == 2 and needle in last_line(err), err
    assert "sec" not in out + err  # a header value may be a secret


def test_good_header_is_sent(capsys: pytest.CaptureFixture[str], odd: str) -> None:
    import httpx

    rc, _, err = bench(capsys, f"openai={odd}/hdr", *QUICK, "--header", "X-Trace=abc\tdef")
    assert rc == 0, err
    assert httpx.get(f"{odd}/hdr/_seen").json().get("X-Trace") == "abc\tdef"


# -- odd numbers from servers: a warning, the run kept --------------------------------------------------------
@pytest.mark.parametrize("value", ["3", -5, 2.5, 1e308, 10**30, True, float("inf"), float("nan"), [3], {"n": 3}])
def test_token_count_treats_odd_values_as_missing(value: Any) -> None:
    assert token_count(value) is None
    n, warning = base.checked_count(value, "usage.completion_tokens")
    assert n is None and "usage.completion_tokens" in warning


def test_token_count_accepts_whole_numbers() -> None:
    assert (token_count(0), token_count(7), token_count(7.0), token_count(None)) == (0, 7, 7, None)
    assert base.checked_count(None, "x") == (None, "")


@pytest.mark.parametrize("mode", ["strusage", "negusage", "floatusage", "bigusage", "boolusage"])
def test_odd_openai_usage_is_a_warning_not_a_failure(capsys: pytest.CaptureFixture[str], odd: str,
                                                     tmp_path: Path, mode: str) -> None:
    out_json = tmp_path / "r.json"
    rc, _, err = bench(capsys, f"openai={odd}/{mode}", *QUICK, "--json", str(out_json))
    assert rc == 0, err
    assert "failed:" not in err and "is not a token count" in err
    ep = json.loads(out_json.read_text())["endpoints"][0]
    assert ep["completed"] == 2 and ep["failed"] == 0
    assert ep["total_output_tokens"] == 6  # 3 chunks per request counted instead, as with no usage at all
    assert ep["output_tokens_estimated"] == 2
    assert ep["total_input_tokens"] >= 0 and ep["output_throughput"] > 0
    assert all(isinstance(n, int) and n >= 0 for n in ep["input_lens"] + ep["output_lens"])


def test_null_usage_is_no_warning(capsys: pytest.CaptureFixture[str], odd: str) -> None:
    rc, _, err = bench(capsys, f"openai={odd}/nullusage", *QUICK)
    assert rc == 0 and "warning: 2 completed" not in err, err


@pytest.mark.parametrize(("mode", "said"), [
    ("strcount", "eval_count '2' is not a token count"),
    ("nulldur", ""),
    ("missingcount", ""),
    ("hugedur", "eval_duration 1e+308 is not a duration"),
    ("negcount", "eval_count -2 is not a token count"),
    ("fraccount", "eval_count 2.5 is not a token count"),
])
def test_odd_ollama_final_line_keeps_the_run_and_the_json(capsys: pytest.CaptureFixture[str], odd: str,
                                                          tmp_path: Path, mode: str, said: str) -> None:
    out_json = tmp_path / "r.json"
    rc, _, err = bench(capsys, f"ollama={odd}/{mode}", *QUICK, "--json", str(out_json))
    assert rc == 0, err
    assert said in err and "failed:" not in err
    text = out_json.read_text()
    doc = json.loads(text, parse_constant=lambda c: pytest.fail(f"{c} in the JSON"))
    ep = doc["endpoints"][0]
    assert ep["completed"] == 2
    stats = ep.get("ollama", {})
    assert all(isinstance(v, int | float) and math.isfinite(v) and v >= 0 for v in stats.values()), stats


def test_json_writes_non_finite_figures_as_vllm_does(tmp_path: Path) -> None:
    from healthchecks.bench import EndpointResult

    r = EndpointResult("x", "ollama", "http://h", "m", "ollama", 1,
                       engine_stats={"a": float("inf"), "b": float("-inf"), "c": float("nan")},
                       meta={"deep": {"x": [float("inf")]}})  # type: ignore[dict-item]
    path = tmp_path / "r.json"
    report.write_json([r], str(path))
    ep = json.loads(path.read_text())["endpoints"][0]
    assert ep["ollama"] == {"a": "inf", "b": "-inf", "c": None} and ep["deep"] == {"x": ["inf"]}


# -- SSE line ends --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["cr", "crlf", "nospace"])
def test_sse_line_ends_the_spec_allows(capsys: pytest.CaptureFixture[str], odd: str, tmp_path: Path,
                                       mode: str) -> None:
    out_json = tmp_path / "r.json"
    rc, _, err = bench(capsys, f"openai={odd}/{mode}", *QUICK, "--json", str(out_json))
    assert rc == 0, err
    ep = json.loads(out_json.read_text())["endpoints"][0]
    assert ep["completed"] == 2 and ep["total_output_tokens"] == 6 and not any(ep["warnings"])


# -- one endpoint's surprise never loses the others' results --------------------------------------------------
def test_unexpected_exception_while_resolving_is_that_endpoints_failure(
        capsys: pytest.CaptureFixture[str], odd: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = base.Engine.models

    async def models(self: base.Engine, http: Any) -> list[str]:
        if "/boom" in http.base:
            raise OverflowError("getsockaddrarg: port must be 0-65535.\nsecond line")
        return await real(self, http)

    monkeypatch.setattr(base.Engine, "models", models)
    out_json = tmp_path / "r.json"
    rc, _, err = bench(capsys, f"openai={odd}/ok", f"openai={odd}/boom", "--num-prompts", "2", "--input-len", "4",
                       "--output-len", "3", "--no-gpu-sampling", "--json", str(out_json))
    assert rc == 1
    eps = json.loads(out_json.read_text())["endpoints"]
    assert [e["completed"] for e in eps] == [2, 0]
    assert eps[1]["setup_error"] == "OverflowError: getsockaddrarg: port must be 0-65535."
    assert "2 failed: OverflowError: getsockaddrarg" in err


def test_unexpected_exception_while_running_is_that_endpoints_failure(
        capsys: pytest.CaptureFixture[str], odd: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = base.Engine.send

    async def send(self: base.Engine, http: Any, *args: Any) -> Any:
        if "/boom" in http.base:
            raise ZeroDivisionError("division by zero")
        return await real(self, http, *args)

    monkeypatch.setattr(base.Engine, "send", send)
    out_json = tmp_path / "r.json"
    rc, _, _err = bench(capsys, f"openai={odd}/boom", f"openai={odd}/ok", *QUICK, "--json", str(out_json))
    assert rc == 1
    eps = json.loads(out_json.read_text())["endpoints"]
    assert [e["completed"] for e in eps] == [0, 2]
    assert eps[0]["setup_error"] == "ZeroDivisionError: division by zero"


@pytest.mark.parametrize(("host", "port", "needle"), [
    ("a" * 64 + ".example", 80, "invalid host name"),
    ("127.0.0.1", 99999, "invalid port"),
])
def test_fastnet_turns_bad_addresses_into_connect_errors(host: str, port: int, needle: str) -> None:
    with pytest.raises(httpcore.ConnectError, match=needle):
        asyncio.run(fastnet.AsyncioBackend().connect_tcp(host, port, timeout=5))


# -- tables in pipes and logs ---------------------------------------------------------------------------------
def test_tables_are_not_squeezed_when_stdout_is_not_a_terminal(capsys: pytest.CaptureFixture[str],
                                                               odd: str) -> None:
    modes = ("ok", "crlf", "nospace", "nullusage")
    rc, out, err = bench(capsys, *(f"openai={odd}/{m}" for m in modes), *QUICK)
    assert rc == 0, err
    assert "…" not in out
    table = [line for line in out.splitlines() if line.startswith(("│", "┃"))]
    assert max(len(line) for line in table) > 120  # four endpoints side by side, each label whole
    host = odd.split("//")[1]
    assert sum(line.count(host) for line in table) >= 4
    assert any("output tokens" in line and line.count("6") >= 4 for line in table)


def test_sweep_table_is_not_squeezed_and_a_tiny_budget_is_named(capsys: pytest.CaptureFixture[str],
                                                                odd: str) -> None:
    rc, out, _err = bench(capsys, f"openai={odd}/ok", *QUICK, "--sweep", "--max-seconds", "0.0001")
    assert "…" not in out and "TTFT p50" in out and "SLO met" in out
    assert "time budget (--max-seconds) was too small" in out
    assert "no load met" not in out and "not even one request" not in out
    assert rc == 1  # nothing was measured


def test_sweep_summary_names_the_budget_only_when_it_cut_the_first_load() -> None:
    from healthchecks.bench import EndpointResult

    def result(cut: int, completed: int) -> EndpointResult:
        r = EndpointResult("x", "vllm", "http://h", "m", "chat", 4)
        r.sweep = {"points": [{"kind": "synchronous", "cut_short": cut, "sent": 4 - cut, "completed": completed}],
                   "best": None}
        return r

    slo = {"ttft": 1.0}
    assert "was too small: one request at a time completed 1 of 4" in report.sweep_summary([result(3, 1)], slo, 0.9)[0]
    assert "no load met" in report.sweep_summary([result(0, 4)], slo, 0.9)[0]
