"""tests/benchmarks/compare_peers.py: each tool's result file read under vLLM's names, checked against the
per-request records the same real run wrote (so a wrong unit or a wrong field shows), the same prompts for every
tool, and the verdicts it prints. The fixtures are real output of vllm bench serve 0.32.0, smoke-bench, AIPerf
0.13.0 and GuideLLM 0.8.1 against the kit's vLLM CPU server (tests/fixtures/peers/README.md)."""

from __future__ import annotations

import gzip
import json
import statistics
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "benchmarks"))

import compare_peers as cp  # noqa: E402

pytestmark = pytest.mark.unit
FIX = ROOT / "tests" / "fixtures" / "peers"
RUN = json.loads((FIX / "run.json").read_text())  # the recorded run: workload, token totals, how it was made
N, OUT = RUN["num_prompts"], RUN["output_len"]


def _load(path: Path) -> Any:
    raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    return json.loads(raw)


def _fixture(name: str) -> Path:
    for p in (FIX / name, FIX / (name + ".gz")):
        if p.exists():
            return p
    raise AssertionError(f"missing fixture {name}")


def _parsed(tool: str, name: str, tmp_path: Path) -> dict[str, float | None]:
    src = _fixture(name)
    plain = tmp_path / Path(name).name
    plain.write_text(json.dumps(_load(src)))
    return cp.parse_output(tool, plain)


def _common(f: dict[str, float | None]) -> None:
    assert f["completed"] == N and f["failed"] == 0
    assert f["total_input_tokens"] == RUN["total_input_tokens"] and f["total_output_tokens"] == N * OUT
    assert f["duration"] and RUN["min_duration_s"] < f["duration"] < 600  # seconds, not ms or ns
    assert f["request_throughput"] == pytest.approx(N / f["duration"], rel=0.02)
    assert f["output_throughput"] == pytest.approx(N * OUT / f["duration"], rel=0.02)
    for m in cp.LATENCIES:
        med, p99 = f[f"median_{m}_ms"], f[f"p99_{m}_ms"]
        if med is not None:
            assert p99 is not None and 0 < med <= p99


def test_vllm_bench_and_smoke_bench_files(tmp_path: Path) -> None:
    for tool in ("vllm-bench", "smoke-bench"):
        f = _parsed(tool, f"{tool}.json", tmp_path)
        _common(f)
        doc = _load(_fixture(f"{tool}.json"))
        doc = doc["endpoints"][0] if tool == "smoke-bench" else doc
        assert f["median_tpot_ms"] == doc["median_tpot_ms"] and f["p99_e2el_ms"] == doc["p99_e2el_ms"]
        assert f["median_e2el_ms"] and f["median_e2el_ms"] > f["median_ttft_ms"]  # type: ignore[operator]


def test_aiperf_summary_matches_its_per_request_records(tmp_path: Path) -> None:
    """profile_export_aiperf.json (summary, ms) against profile_export.jsonl (one record per request)."""
    f = _parsed("aiperf", "aiperf/profile_export_aiperf.json", tmp_path)
    _common(f)
    recs = [json.loads(line)["metrics"] for line in gzip.decompress(
        _fixture("aiperf/profile_export.jsonl").read_bytes()).decode().splitlines() if line.strip()]
    assert len(recs) == N

    def per_request(tag: str) -> list[float]:
        return [r[tag]["value"] for r in recs]

    assert f["median_ttft_ms"] == pytest.approx(np.percentile(per_request("time_to_first_token"), 50), rel=1e-6)
    assert f["p99_e2el_ms"] == pytest.approx(np.percentile(per_request("request_latency"), 99), rel=1e-6)
    # AIPerf's inter_token_latency is vLLM's TPOT: (E2EL - TTFT) / (tokens - 1), per request
    tpot = [(r["request_latency"]["value"] - r["time_to_first_token"]["value"]) / (r["output_sequence_length"][
        "value"] - 1) for r in recs]
    assert f["median_tpot_ms"] == pytest.approx(statistics.median(tpot), rel=1e-3)
    # inter_chunk_latency is vLLM's ITL: every gap, pooled (AIPerf's t-digest: within 0.05%)
    gaps = [g for r in recs for g in r["inter_chunk_latency"]["value"]]
    assert len(gaps) == N * (OUT - 1)
    assert f["median_itl_ms"] == pytest.approx(np.percentile(gaps, 50), rel=5e-3)


def test_guidellm_summary_matches_its_per_request_records(tmp_path: Path) -> None:
    """benchmarks.json: the summaries against the per-request stats in the same file (request_latency in s)."""
    f = _parsed("guidellm", "guidellm.json", tmp_path)
    _common(f)
    assert f["median_itl_ms"] is None and f["p99_itl_ms"] is None  # GuideLLM has no per-chunk gap metric
    reqs = _load(_fixture("guidellm.json"))["benchmarks"][0]["requests"]["successful"]
    assert len(reqs) == N

    def a_median(v: float | None, values: list[float]) -> bool:
        """GuideLLM's median is a sample (nearest rank of its CDF, guidellm/schemas/base/statistics.py), not an
        interpolation: one of the two middle values."""
        xs = sorted(values)
        return v is not None and any(v == pytest.approx(x, rel=1e-9) for x in xs[(N - 1) // 2: N // 2 + 1])

    assert a_median(f["median_e2el_ms"], [1000 * r["request_latency"] for r in reqs])  # seconds in the file
    assert a_median(f["median_tpot_ms"], [r["inter_token_latency_ms"] for r in reqs])
    assert a_median(f["median_ttft_ms"], [r["time_to_first_token_ms"] for r in reqs])


def test_every_tool_gets_the_same_prompts_of_exact_length(tmp_path: Path) -> None:
    from tokenizers import Tokenizer

    if not (cp.HF_DIR / "tokenizer.json").exists():
        pytest.fail(f"{cp.HF_DIR} is missing: run `bash tests/setup.sh` first", pytrace=False)
    w = cp.Workload(num_prompts=12, input_len=128, output_len=32)
    prompts = cp.make_prompts(w)
    tok = Tokenizer.from_file(str(cp.HF_DIR / "tokenizer.json"))
    assert len(set(prompts)) == 12
    assert {len(tok.encode(p, add_special_tokens=False).ids) for p in prompts} == {128}
    files = cp.write_datasets(prompts, w, tmp_path)
    rows = {k: [json.loads(line) for line in p.read_text().splitlines()] for k, p in files.items()}
    assert [r["prompt"] for r in rows["custom"]] == [r["text"] for r in rows["aiperf"]] == \
        [r["prompt"] for r in rows["guidellm"]] == prompts
    assert {r["output_tokens"] for r in rows["custom"]} == {r["output_length"] for r in rows["aiperf"]} == \
        {r["output_tokens_count"] for r in rows["guidellm"]} == {32}


def _run(tool: str, rnd: int, tps: float, cpu: float, tokens: tuple[int, int] = (6144, 1536)) -> cp.Run:
    figures: dict[str, float | None] = dict.fromkeys(cp.KEYS, 10.0)
    figures.update(completed=N, failed=0, request_throughput=tps, total_input_tokens=tokens[0],
                   total_output_tokens=tokens[1])
    return cp.Run(tool, rnd, figures, cpu, 1.0, 1.0, "-")


def test_verdicts() -> None:
    c = cp.Comparison(cp.Workload(), {})
    c.runs = [_run("vllm-bench", 0, 1.0, 11), _run("vllm-bench", 1, 1.2, 11), _run("guidellm", 0, 1.1, 22),
              _run("smoke-bench", 0, 1.15, 4), _run("smoke-bench", 1, 1.05, 5)]
    v = "\n".join(cp.verdicts(c))
    assert "token totals identical across tools: YES" in v
    assert "smoke-bench request_throughput 1.10 within the peers' spread [1.00, 1.20]: YES" in v
    assert "client CPU per request lowest: smoke-bench (YES" in v

    c.runs += [_run("aiperf", 0, 1.1, 3, tokens=(6144, 1535))]
    c.runs[3].figures["request_throughput"] = c.runs[4].figures["request_throughput"] = 2.0
    v = "\n".join(cp.verdicts(c))
    assert "token totals identical across tools: NO" in v
    assert "request_throughput 2.00 within the peers' spread [1.00, 1.20]: NO (outside by +66.7%)" in v
    assert "client CPU per request lowest: aiperf (NO for smoke-bench)" in v
