"""Our metrics.calculate against vLLM's own calculate_metrics (vllm/benchmarks/serve.py), on the same
synthetic request outputs, run inside the real vLLM venv: every aggregate must be equal."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
CACHE = Path(os.environ.get("GIK_CACHE", Path.home() / ".cache" / "gik"))

SCRIPT = r'''
import json, random, sys
from vllm.benchmarks.serve import calculate_metrics
from vllm.benchmarks.lib.endpoint_request_func import RequestFuncOutput
from vllm.benchmarks.datasets import SampleRequest
from healthchecks import metrics as ours

rng = random.Random(int(sys.argv[1]))
n = 40
inputs, theirs_out, our_out = [], [], []
for i in range(n):
    ok = rng.random() > 0.15
    out_tokens = rng.choice([1, 2, rng.randint(3, 64)])
    prompt = rng.randint(5, 300)
    ttft = rng.uniform(0.01, 2.0)
    itl = [rng.uniform(0.005, 0.2) for _ in range(max(out_tokens - 1, 0))]
    latency = ttft + sum(itl)
    inputs.append(SampleRequest(prompt="p", prompt_len=prompt, expected_output_len=out_tokens))
    theirs_out.append(RequestFuncOutput(success=ok, latency=latency, output_tokens=out_tokens, ttft=ttft,
                                        itl=list(itl), prompt_len=prompt, start_time=i * 0.1))
    our_out.append(ours.RequestResult(success=ok, ttft=ttft, latency=latency, itl=list(itl),
                                      output_tokens=out_tokens, prompt_tokens=prompt, chunks=out_tokens,
                                      start_time=i * 0.1))
dur = 7.5
goodput = {"ttft": 900.0, "tpot": 120.0, "e2el": 3000.0}
m, _ = calculate_metrics(inputs, theirs_out, dur, None, [50.0, 90.0, 99.0], goodput)
o = ours.calculate(our_out, dur, goodput)
pairs = {"completed": (m.completed, o["completed"]), "total_input": (m.total_input, o["total_input_tokens"]),
         "total_output": (m.total_output, o["total_output_tokens"]),
         "request_throughput": (m.request_throughput, o["request_throughput"]),
         "request_goodput": (m.request_goodput, o["request_goodput"]),
         "output_throughput": (m.output_throughput, o["output_throughput"]),
         "total_token_throughput": (m.total_token_throughput, o["total_token_throughput"]),
         "max_output_tokens_per_s": (m.max_output_tokens_per_s, o["max_output_tokens_per_s"]),
         "max_concurrent_requests": (m.max_concurrent_requests, o["max_concurrent_requests"])}
for name in ("ttft", "tpot", "itl", "e2el"):
    for stat in ("mean", "median", "std"):
        pairs[f"{stat}_{name}_ms"] = (getattr(m, f"{stat}_{name}_ms"), o[f"{stat}_{name}_ms"])
    for p, v in getattr(m, f"percentiles_{name}_ms"):
        pairs[f"p{int(p)}_{name}_ms"] = (v, o[f"p{int(p)}_{name}_ms"])
print(json.dumps(pairs))
'''


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_aggregates_equal_vllm_calculate_metrics(seed: int) -> None:
    py = CACHE / "venv-vllm" / "bin" / "python"
    if not py.exists():
        pytest.fail("vLLM venv missing: run `bash tests/setup.sh`", pytrace=False)
    r = subprocess.run([str(py), "-c", SCRIPT, str(seed)], capture_output=True, text=True, timeout=300,
                       env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert r.returncode == 0, r.stderr[-2000:]
    pairs = json.loads(r.stdout.strip().splitlines()[-1])
    assert len(pairs) == 9 + 4 * 6
    for name, (theirs, ours) in pairs.items():
        assert ours == pytest.approx(theirs, rel=1e-9, abs=1e-9), name


SCHEDULE = r'''
import asyncio, json, sys
import numpy as np
import vllm.benchmarks.serve as serve
from vllm.benchmarks.datasets import CustomDataset

n, rate, burst, seed, ds = int(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
np.random.seed(seed)  # main_async: random.seed(seed); np.random.seed(seed)
waits = []

async def fake_sleep(s):
    waits.append(s)

serve.time.time = lambda: 0.0  # get_request sleeps start + delay - now: with a frozen clock, exactly its delay
serve.asyncio.sleep = fake_sleep

async def collect():
    async for _ in serve.get_request(list(range(n)), rate, burst):
        pass

asyncio.run(collect())
order = [r.prompt for r in CustomDataset(dataset_path=ds, random_seed=seed).sample(tokenizer=None, num_requests=n + 3,
                                                                                   output_len=4)]
print(json.dumps({"waits": waits, "order": order}))
'''


@pytest.mark.parametrize(("rate", "burstiness", "seed"), [(4.0, 1.0, 0), (4.0, 0.5, 7), (10.0, float("inf"), 3)])
def test_schedule_and_order_equal_vllms(tmp_path: Path, rate: float, burstiness: float, seed: int) -> None:
    """vLLM's own get_request (clock frozen, sleeps recorded) and CustomDataset give the send times and the
    request order that smoke-bench uses for the same seed (N=40; the file oversampled by 3)."""
    import asyncio

    from healthchecks.bench import send_times
    from healthchecks.workload import WorkloadSpec

    py = CACHE / "venv-vllm" / "bin" / "python"
    if not py.exists():
        pytest.fail("vLLM venv missing: run `bash tests/setup.sh`", pytrace=False)
    ds = tmp_path / "d.jsonl"
    ds.write_text("".join(json.dumps({"prompt": f"prompt {i}"}) + "\n" for i in range(40)))
    r = subprocess.run([str(py), "-c", SCHEDULE, "40", str(rate), str(burstiness), str(seed), str(ds)],
                       capture_output=True, text=True, timeout=300, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert r.returncode == 0, r.stderr[-2000:]
    theirs = json.loads(r.stdout.strip().splitlines()[-1])
    ours = send_times(40, rate, burstiness, seed)
    assert theirs["waits"] == pytest.approx(ours, rel=1e-12, abs=1e-12)
    assert ours[-1] == pytest.approx(40 / rate)
    spec = WorkloadSpec("custom", num_prompts=43, seed=seed, dataset_path=str(ds), output_len=4)
    assert [q.prompt for q in asyncio.run(spec.build(None))] == theirs["order"]
