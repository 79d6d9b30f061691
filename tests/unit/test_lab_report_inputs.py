"""lab-report against malformed per-host files: every reader of healthchecks/lab_report.py (host.json: gpus,
reboot_pending, failures; healthcheck.json: endpoints, checks; bench.json: endpoints, gpu_memory, engine_peak_mib,
sweep, best, slo; JSON's NaN/Infinity; a lone surrogate; nesting too deep) given the wrong JSON type. One host's bad
file makes only that host's cell say why (naming the file and the field): the other host keeps its result, all three
outputs are written (lab.json strict JSON), and the console script exits 0/1 with no traceback."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from healthchecks import lab_report as lr

pytestmark = pytest.mark.unit
BIN = Path(sys.executable).parent
OK = [{"name": "liveness", "status": "pass", "reason": "200"}, {"name": "completion", "status": "pass",
                                                                "reason": "4 tokens"}]


def _endpoint(name: str = "vllm", **extra: Any) -> dict[str, Any]:
    return {"name": name, "engine": "vllm", "url": "http://10.0.0.1:8000", "model": "m", "checks": OK,
            "healthy": True, **extra}


GOOD_BENCH = {"endpoints": [{"label": "vllm", "gpu_memory": {"engine_peak_mib": {"0": 1234.0}},
                             "sweep": {"best": {"request_throughput": 2.5, "users": 4, "output_throughput": 80,
                                                "offered": "4 users"}, "slo": {"ttft_ms": 500}}}]}

# (file, its text, what the bad host's problems/why must name)
CASES: list[tuple[str, str, str]] = [
    ("bench.json", json.dumps({"endpoints": 3}), "bench.json: endpoints is not a list"),
    ("bench.json", json.dumps({"endpoints": [3]}), "bench.json: endpoint 1 is not an object"),
    ("bench.json", json.dumps({"endpoints": [{"label": "vllm", "gpu_memory": 5}]}),
     "bench.json: vllm: gpu_memory is not an object"),
    ("bench.json", json.dumps({"endpoints": [{"label": "vllm", "gpu_memory": {"engine_peak_mib": [1]}}]}),
     "bench.json: vllm: gpu_memory: engine_peak_mib is not an object"),
    ("bench.json", json.dumps({"endpoints": [{"label": "vllm", "sweep": "fast"}]}),
     "bench.json: vllm: sweep is not an object"),
    ("bench.json", json.dumps({"endpoints": [{"label": "vllm", "sweep": {"best": 5}}]}),
     "bench.json: vllm: sweep best is not an object"),
    ("bench.json", json.dumps({"endpoints": [{"label": "vllm", "sweep": {"best": {"users": 1}, "slo": [500]}}]}),
     "bench.json: vllm: sweep: slo is not an object"),
    ("healthcheck.json", json.dumps({"endpoints": [_endpoint(checks=3)]}),
     "healthcheck.json: endpoint vllm: checks is not a list"),
    ("healthcheck.json", json.dumps({"endpoints": [_endpoint(checks={"liveness": "pass"})]}),
     "healthcheck.json: endpoint vllm: checks is not a list"),
    ("healthcheck.json", json.dumps({"endpoints": [5, _endpoint()]}), "healthcheck.json: 1 endpoint(s) not an object"),
    ("healthcheck.json", json.dumps({"endpoints": {"vllm": 1}}), "healthcheck.json: no endpoints list"),
    ("healthcheck.json", "[" * 100_000, "healthcheck.json: not JSON"),
    ("host.json", json.dumps({"gpus": 3}), "host.json: gpus is not a list"),
    ("host.json", json.dumps({"gpus": "H100"}), "host.json: gpus is not a list"),
    ("host.json", json.dumps({"failures": 3}), "host.json: failures is not a list"),
    ("host.json", json.dumps({"reboot_pending": "yes"}), "host.json: reboot_pending is not true or false"),
]


def _lab(tmp: Path, name: str, text: str) -> Path:
    results = tmp / "results"
    for host in ("good", "bad"):
        d = results / host
        d.mkdir(parents=True)
        (d / "healthcheck.json").write_text(json.dumps({"healthy": True, "endpoints": [_endpoint()]}))
        (d / "bench.json").write_text(json.dumps(GOOD_BENCH))
        (d / "host.json").write_text(json.dumps({"verified": True, "gpus": ["H100"], "reboot_pending": False}))
    (results / "bad" / name).write_text(text)
    return results


def _strict(text: str) -> Any:
    def no_constant(c: str) -> Any:
        raise AssertionError(f"lab.json holds {c}: not JSON")
    return json.loads(text, parse_constant=no_constant)


def _check_good(rep: lr.LabReport) -> lr.HostResult:
    hosts = {h.name: h for h in rep.hosts}
    good = hosts["good"]
    assert good.state == lr.HEALTHY and not good.problems, (good.state, good.why, good.problems)
    [row] = good.engines
    assert row.gpu_peak_mib == {"0": 1234.0} and row.capacity and row.capacity["request_throughput"] == 2.5
    return hosts["bad"]


@pytest.mark.parametrize("name, text, why", CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)])
def test_one_hosts_malformed_file_is_that_hosts_cell_only(tmp_path: Path, name: str, text: str, why: str) -> None:
    results = _lab(tmp_path, name, text)
    rep = lr.collect(results)
    bad = _check_good(rep)
    said = "; ".join([*bad.problems, bad.why, *(r.why for r in bad.engines), *(r.gpu_note for r in bad.engines),
                      *(r.capacity_note for r in bad.engines)])
    assert why in said, (why, said)
    out = tmp_path / "out"
    out.mkdir()
    lr.write(rep, {"html": ("--html", out / "lab.html"), "json": ("--json", out / "lab.json"),
                   "junit": ("--junit", out / "lab-junit.xml")})
    doc = _strict((out / "lab.json").read_text())
    assert {h["name"] for h in doc["hosts"]} == {"good", "bad"}
    page = (out / "lab.html").read_text()
    assert why.split(": ")[0] in page and "good" in page
    # the console script: a verdict, never a traceback
    r = subprocess.run([str(BIN / "lab-report"), str(results), "--quiet"], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode in (0, 1), (r.returncode, r.stderr[-2000:])
    assert "Traceback" not in r.stdout + r.stderr, r.stderr[-3000:]
    _strict((results / "lab.json").read_text())


def test_nan_and_infinity_never_make_lab_json_invalid(tmp_path: Path) -> None:
    """Python reads JSON's NaN/Infinity; lab.json is written with allow_nan=False: such figures are no figure."""
    bench = {"endpoints": [{"label": "vllm", "gpu_memory": {"engine_peak_mib": {"0": float("nan"), "1": 10.0}},
                            "sweep": {"best": {"request_throughput": float("inf"), "users": 2},
                                      "slo": {"ttft_ms": float("nan"), "tpot_ms": 50},
                                      "attainment_required": float("-inf")}}]}
    results = _lab(tmp_path, "bench.json", json.dumps(bench))  # json.dumps writes NaN / Infinity
    rep = lr.collect(results)
    bad = _check_good(rep)
    [row] = bad.engines
    assert row.gpu_peak_mib == {"1": 10.0}
    assert row.capacity and row.capacity["request_throughput"] is None and row.capacity["slo"] == {"tpot_ms": 50}
    out = tmp_path / "lab.json"
    lr.write(rep, {"json": ("--json", out)})
    _strict(out.read_text())


def test_a_lone_surrogate_is_written_not_a_lost_report(tmp_path: Path) -> None:
    """"\\ud800" is valid JSON and Python reads it; it cannot be written as UTF-8 (page, JUnit, console)."""
    hc = '{"endpoints": [{"name": "vllm", "engine": "vllm", "url": "u", "model": "m", "healthy": false, ' \
         '"checks": [{"name": "liveness", "status": "fail", "reason": "bad \\ud800 reply"}]}]}'
    results = _lab(tmp_path, "healthcheck.json", hc)
    rep = lr.collect(results)
    bad = _check_good(rep)
    assert bad.state == lr.UNHEALTHY and "bad ? reply" in bad.why
    out = tmp_path / "out"
    out.mkdir()
    lr.write(rep, {"html": ("--html", out / "lab.html"), "json": ("--json", out / "lab.json"),
                   "junit": ("--junit", out / "lab-junit.xml")})
    assert "bad ? reply" in (out / "lab.html").read_text(encoding="utf-8")
    r = subprocess.run([str(BIN / "lab-report"), str(results)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr[-3000:]
    assert "bad ? reply" in r.stdout
