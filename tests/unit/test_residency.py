"""GPU residency attribution on outputs recorded on a real H100 (tests/fixtures/gpu/h100-two-servers: a CUDA
llama-server, pid 5855, beside the same build with the GPU hidden, pid 5856), /proc parsing, gpu-report and
the engines' CPU-fallback log signatures."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from healthchecks.cli import gpu_report as gpu_report_cli
from healthchecks.diagnose import match_cause
from healthchecks.gpu import residency, smi
from healthchecks.gpu import samples as gpu_samples
from healthchecks.gpu.attribution import attribute, peaks

pytestmark = pytest.mark.unit
FIX = Path(__file__).resolve().parents[1] / "fixtures" / "gpu"
RUN = FIX / "h100-two-servers"
GPU_PID, CPU_PID = 5855, 5856


def test_compute_apps_and_gpus_parse_real_output() -> None:
    apps = smi.parse_compute_apps((RUN / "compute-apps.csv").read_text())
    assert [(a.pid, a.used_mib) for a in apps] == [(GPU_PID, 912.0)]
    gpus = smi.parse_gpus((RUN / "gpus.csv").read_text())
    (uuid, (index, used)), = gpus.items()
    assert uuid == apps[0].gpu_uuid and index == "0" and used >= 912
    # the sampler's timestamped form parses the same way
    stamped = smi.parse_compute_apps((RUN / "sampler-apps.csv").read_text())
    assert {a.pid for a in stamped} == {GPU_PID} and max(a.used_mib for a in stamped) == 1016.0
    assert smi.parse_compute_apps("pid, used_gpu_memory [MiB], gpu_uuid\n7, [N/A], GPU-x\n")[0].used_mib == 0


@pytest.mark.parametrize(("cell", "want"), [
    ("912", 912.0), ("912 MiB", 912.0), (" 1016.5 ", 1016.5), ("0", 0.0), ("[N/A]", None), ("", None),
    ("-5", None), ("inf", None), ("nan", None), ("\u00b2", None), ("N/A MiB", None),
])
def test_one_reader_of_nvidia_smi_memory_figures(cell: str, want: float | None) -> None:
    assert smi.mib(cell) == want


def test_peaks_over_samples_sum_an_engines_processes_at_one_instant() -> None:
    """gpu-report's attribution is healthcheck's, per sampling instant: an engine's processes add up within an
    instant, the peak is taken across instants, another engine's processes and unknown figures count for none."""
    text = ("t1, 10, 100, GPU-a\nt1, 11, 50, GPU-a\nt1, 20, 999, GPU-a\n"
            "t2, 10, 120, GPU-a\nt2, 11, [N/A], GPU-a\nt2, 10, 30, GPU-b\n")
    apps = smi.parse_compute_apps(text)
    assert [a.timestamp for a in apps] == ["t1", "t1", "t1", "t2", "t2", "t2"]
    got = peaks(apps, {"vllm": {10, 11}, "ollama": {21}}, {"GPU-a": "0", "GPU-b": "1"})
    assert got == {"vllm": {"0": 150.0, "1": 30.0}, "ollama": {}}


def test_attribution_counts_only_the_engines_processes() -> None:
    apps = smi.parse_compute_apps((RUN / "compute-apps.csv").read_text())
    index = {u: i for u, (i, _) in smi.parse_gpus((RUN / "gpus.csv").read_text()).items()}
    assert attribute(apps, {GPU_PID, 99999}, index) == {"0": 912.0}
    assert attribute(apps, {CPU_PID}, index) == {}  # the device total is not the engine's
    two = [*apps, smi.ComputeApp(GPU_PID + 1, 100.0, apps[0].gpu_uuid)]
    assert attribute(two, {GPU_PID, GPU_PID + 1}, index) == {"0": 1012.0}  # an engine's children add up


def test_proc_net_tcp_listening_socket_and_nspid() -> None:
    tcp = ("  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n"
           "   0: 0100007F:4A66 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 31337 1 0\n"
           "   1: 0100007F:4A66 0100007F:C350 01 00000000:00000000 00:00000000 00000000     0        0 31338 1 0\n"
           "   2: 00000000:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4242 1 0\n")
    assert residency.listening_inodes([tcp], 0x4A66) == {"31337"}  # the established one is not a listener
    assert residency.listening_inodes([tcp], 8080) == {"4242"}
    assert residency.listening_inodes([tcp], 9) == set()
    assert residency.ns_pid("Name:\tpython3\nNSpid:\t48211\t1\n") == 1
    assert residency.ns_pid("Name:\tx\nNSpid:\t77\n") == 77
    assert residency.ns_pid("Name:\tx\n") is None


def test_gpu_report_on_samples_recorded_on_the_h100(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    samples = tmp_path / "gpu"
    samples.mkdir()
    shutil.copy(RUN / "sampler-apps.csv", samples / "apps.csv")
    shutil.copy(RUN / "sampler-gpus.csv", samples / "gpus.csv")
    (samples / "pids.json").write_text(json.dumps({"llamacpp": [GPU_PID], "vllm": [CPU_PID]}))
    result = gpu_samples.summarise((samples / "apps.csv").read_text(), (samples / "gpus.csv").read_text(),
                                  {"llamacpp": [GPU_PID], "vllm": [CPU_PID]})
    assert result["llamacpp"].engine_peak_mib == {"0": 1016.0}
    assert result["llamacpp"].device_peak_mib["0"] >= 1016.0
    assert result["vllm"].engine_peak_mib == {} and "held no GPU memory" in result["vllm"].note

    bench = tmp_path / "bench.json"
    bench.write_text(json.dumps({"endpoints": [{"engine": "llamacpp"}, {"engine": "ollama"}]}))
    assert gpu_report_cli.main([str(samples), "--bench-json", str(bench)]) == 0
    entries = json.loads(bench.read_text())["endpoints"]
    assert entries[0]["gpu_memory"]["engine_peak_mib"] == {"0": 1016.0} and "gpu_memory" not in entries[1]
    assert gpu_report_cli.main([str(samples), "--expect-gpu"]) == 1
    assert "no GPU memory held by vllm" in capsys.readouterr().err
    (samples / "pids.json").write_text(json.dumps({"llamacpp": [GPU_PID]}))
    assert gpu_report_cli.main([str(samples), "--expect-gpu", "--json"]) == 0
    assert gpu_report_cli.main([str(tmp_path / "missing")]) == 2
    (samples / "pids.json").write_text("[1, 2]")
    assert gpu_report_cli.main([str(samples)]) == 2
    assert "must map each engine" in capsys.readouterr().err


@pytest.mark.parametrize(("engine", "line", "cause"), [
    ("llamacpp", None, "llama.cpp fell back to the CPU"),  # the recorded log of the GPU-hidden server
    ("vllm", "INFO 11-22 16:01:02 [__init__.py:241] Automatically detected platform cpu.",
     "vLLM fell back to the CPU platform"),
    ("ollama", 'time=2026-11-22T16:00:00Z level=INFO source=gpu.go:377 msg="no compatible GPUs were discovered"',
     "Ollama found no usable GPU (runs on the CPU)"),
])
def test_cpu_fallback_signatures(engine: str, line: str | None, cause: str) -> None:
    logs = (RUN / "cpu-server-head.log").read_text() if line is None else f"starting\n{line}\nserving\n"
    found = match_cause(logs, engine)
    assert found is not None and found.name == cause and found.fix
    assert match_cause(logs) is not None and match_cause(logs).name == cause  # type: ignore[union-attr]
    assert match_cause("all good\nlistening on 8080\n", engine) is None
