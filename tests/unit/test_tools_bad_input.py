"""Bad input to the kit's smaller tools ends as one line naming the file or setting, with exit 2, never a
traceback and never a token's content: gpu-report's samples and benchmark JSON, compose-preflight's .env,
the Hugging Face token file (healthcheck / smoke-bench), prepare-model's GGUF header.

Each case runs the console script's ``main()`` the way the installed script does."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import free_port

from healthchecks import preflight
from healthchecks.cli import gpu_report, prepare_model
from healthchecks.cli.healthcheck import main as healthcheck_main

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
SECRET = "hf_SeCrEtToKeNvAlUe"


def _one_line(err: str) -> str:
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert "Traceback" not in err, err
    assert len(lines) == 1, err
    return lines[0]


# -- gpu-report ---------------------------------------------------------------------------------------------
APPS = "2026/11/22 10:00:00.000, 123, 500, GPU-a\n2026/11/22 10:00:00.000, 124, 300, GPU-a\n"
GPUS = "2026/11/22 10:00:00.000, 0, GPU-a, 1000\n"


def _samples(d: Path, apps: str | bytes = APPS, gpus: str | bytes = GPUS,
             pids: str | bytes = '{"vllm": [123, 124]}') -> Path:
    d.mkdir(parents=True, exist_ok=True)
    for name, content in (("apps.csv", apps), ("gpus.csv", gpus), ("pids.json", pids)):
        (d / name).write_bytes(content.encode() if isinstance(content, str) else content)
    return d


@pytest.mark.parametrize(("pids", "words"), [
    ('{"vllm": ["²"]}', "is not a PID"),  # str.isdigit accepts it, int() does not
    ('{"vllm": ["\uff11\uff12\uff13"]}', "is not a PID"),  # full-width digits
    ('{"vllm": ["' + "9" * 5000 + '"]}', "is not a PID"),  # int() refuses over 4300 digits
    ('{"vllm": [true]}', "is not a PID"),
    ('{"vllm": [-5]}', "is not a PID"),
    ('{"vllm": [1.5]}', "is not a PID"),
    ('{"vllm": [99999999999]}', "is not a PID"),
    ('{"vllm": [' + "9" * 5000 + ']}', "not usable JSON"),  # int() refuses over 4300 digits
    ('{"vllm": [123], "ollama": 5}', "'ollama' maps to a number"),
    ('[123]', "not an array"),
    ('"vllm"', "not a string"),
    ("", "is empty"),
    ("  \n", "is empty"),
    ("{", "is not JSON"),
    ("[" * 100_000, "not usable JSON"),  # deeper than Python's stack
    (b"\xff\xfe{}", "is not UTF-8 text"),
])
def test_gpu_report_bad_pids_json(tmp_path: Path, capsys: pytest.CaptureFixture[str], pids: str | bytes,
                                  words: str) -> None:
    d = _samples(tmp_path / "s", pids=pids)
    assert gpu_report.main([str(d)]) == 2
    line = _one_line(capsys.readouterr().err)
    assert "pids.json" in line and words in line, line


@pytest.mark.parametrize("name", ["apps.csv", "gpus.csv", "pids.json"])
def test_gpu_report_input_missing_or_a_directory(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                 name: str) -> None:
    d = _samples(tmp_path / "s")
    (d / name).unlink()
    assert gpu_report.main([str(d)]) == 2
    assert f"{name} {d / name} does not exist" in _one_line(capsys.readouterr().err)
    (d / name).mkdir()
    assert gpu_report.main([str(d)]) == 2
    assert f"{name} {d / name} is a directory" in _one_line(capsys.readouterr().err)


@pytest.mark.parametrize("name", ["apps.csv", "gpus.csv"])
def test_gpu_report_samples_not_utf8(tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str) -> None:
    d = _samples(tmp_path / "s", **{name.split(".")[0]: b"\xff\xfe\x00garbage\n"})
    assert gpu_report.main([str(d)]) == 2
    assert f"{name} {d / name} is not UTF-8 text" in _one_line(capsys.readouterr().err)


def test_gpu_report_samples_folder_is_a_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = tmp_path / "file"
    f.write_text("x")
    assert gpu_report.main([str(f)]) == 2
    assert f"samples folder {f} is not a directory" in _one_line(capsys.readouterr().err)


def test_gpu_report_odd_sample_lines_are_skipped(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """nvidia-smi lines that do not parse (a "²" PID, blank or [N/A] or inf memory, a cut-off last line) are
    skipped; the good samples still count."""
    apps = APPS + ("2026/11/22 10:00:01.000, ², 900, GPU-a\n2026/11/22 10:00:01.000, 123, , GPU-a\n"
                   "2026/11/22 10:00:02.000, 123, [N/A], GPU-a\n2026/11/22 10:00:03.000, 123, inf, GPU-a\n"
                   "2026/11/22 10:00:04.000, 123, nan, GPU-a\n2026/11/22 10:00:05.000, " + "9" * 5000 +
                   ", 900, GPU-a\n2026/11/22 10:00:06.000, 12")
    gpus = GPUS + "2026/11/22 10:00:01.000, 0, GPU-a, \n2026/11/22 10:00:01.000, 0, GPU-a, -inf\n"
    d = _samples(tmp_path / "s", apps=apps, gpus=gpus)
    assert gpu_report.main([str(d), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["vllm"]["engine_peak_mib"] == {"0": 800.0}
    assert out["vllm"]["device_peak_mib"] == {"0": 1000.0}


def test_gpu_report_empty_samples_mean_no_gpu_memory(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    d = _samples(tmp_path / "s", apps="", gpus="")
    assert gpu_report.main([str(d), "--expect-gpu"]) == 1
    assert "no GPU memory held by vllm" in _one_line(capsys.readouterr().err)


@pytest.mark.parametrize(("bench", "words"), [
    ("[1, 2]", "holds an array"),
    ('{"endpoints": [1, "x", {"engine": "vllm"}]}', "endpoints[0] is a number"),
    ('{"endpoints": [{"engine": "vllm"}, null]}', "endpoints[1] is null"),
    ('{"endpoints": {"engine": "vllm"}}', "endpoints is an object"),
    ("", "is empty"),
    ("not json", "is not JSON"),
    (b"\x80", "is not UTF-8 text"),
])
def test_gpu_report_bad_bench_json(tmp_path: Path, capsys: pytest.CaptureFixture[str], bench: str | bytes,
                                   words: str) -> None:
    d = _samples(tmp_path / "s")
    f = tmp_path / "bench.json"
    f.write_bytes(bench.encode() if isinstance(bench, str) else bench)
    assert gpu_report.main([str(d), "--bench-json", str(f)]) == 2
    line = _one_line(capsys.readouterr().err)
    assert f"--bench-json {f}" in line and words in line, line
    assert f.read_bytes() == (bench.encode() if isinstance(bench, str) else bench)  # left as it was


def test_gpu_report_bench_json_a_directory_or_missing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    d = _samples(tmp_path / "s")
    assert gpu_report.main([str(d), "--bench-json", str(tmp_path)]) == 2
    assert f"--bench-json {tmp_path} is a directory" in _one_line(capsys.readouterr().err)
    assert gpu_report.main([str(d), "--bench-json", str(tmp_path / "nope.json")]) == 2
    assert "does not exist" in _one_line(capsys.readouterr().err)


@pytest.fixture
def unwritable(tmp_path: Path) -> Iterator[Path]:
    """A benchmark JSON this process cannot write, in a folder it cannot write: by mode for a user, by the
    immutable attribute for root (whom modes do not stop)."""
    folder = tmp_path / "ro"
    folder.mkdir()
    f = folder / "bench.json"
    f.write_text('{"endpoints": [{"engine": "vllm"}]}')
    if os.geteuid() != 0:
        f.chmod(0o444)
        folder.chmod(0o555)
        yield f
        folder.chmod(0o755)
        return
    chattr = shutil.which("chattr")
    if chattr is None or subprocess.run([chattr, "+i", str(f)], capture_output=True).returncode != 0:
        pytest.skip("running as root where chattr +i is not available: no way to make a file unwritable")
    try:
        yield f
    finally:
        subprocess.run([chattr, "-i", str(f)], check=True)


def test_gpu_report_bench_json_unwritable(unwritable: Path, capsys: pytest.CaptureFixture[str]) -> None:
    d = _samples(unwritable.parent.parent / "s")
    assert gpu_report.main([str(d), "--bench-json", str(unwritable)]) == 2
    assert f"--bench-json {unwritable} cannot be written" in _one_line(capsys.readouterr().err)
    assert json.loads(unwritable.read_text()) == {"endpoints": [{"engine": "vllm"}]}


def test_gpu_report_bench_json_written_whole(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    d = _samples(tmp_path / "s")
    f = tmp_path / "bench.json"
    f.write_text('{"endpoints": [{"engine": "vllm"}, {"engine": "ollama"}]}')
    f.chmod(0o640)
    assert gpu_report.main([str(d), "--bench-json", str(f)]) == 0
    eps = json.loads(f.read_text())["endpoints"]
    assert eps[0]["gpu_memory"]["engine_peak_mib"] == {"0": 800.0} and "gpu_memory" not in eps[1]
    assert f.stat().st_mode & 0o777 == 0o640
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bench.json", "s"]  # no temporary file left


# -- compose-preflight ----------------------------------------------------------------------------------------
def _project(tmp_path: Path, dotenv: str) -> Path:
    d = tmp_path / "proj"
    d.mkdir()
    shutil.copy(ROOT / "compose" / "compose.yaml", d / "compose.yaml")
    (d / ".env").write_text(dotenv + "\n", encoding="utf-8")
    return d


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for k in list(os.environ):
        if k.startswith(preflight.PREFIXES) or k in preflight.DEFAULTS:
            monkeypatch.delenv(k)


@pytest.mark.usefixtures("clean_env")
@pytest.mark.parametrize(("setting", "words"), [
    ("VLLM_PORT=²", "VLLM_PORT='²' is not a port number"),
    ("VLLM_PORT=\uff18\uff10\uff10\uff10", "VLLM_PORT='\uff18\uff10\uff10\uff10' is not a port number"),
    ("VLLM_PORT=" + "9" * 5000, "VLLM_PORT='999"),
    ("VLLM_PORT=-80", "VLLM_PORT='-80' is not a port number"),
    ("VLLM_TENSOR_PARALLEL_SIZE=²", "VLLM_TENSOR_PARALLEL_SIZE='²' must be a positive integer"),
    ("LLAMACPP_PARALLEL=\uff11", "LLAMACPP_PARALLEL='\uff11' must be a positive integer"),
    ("VLLM_MAX_MODEL_LEN=" + "9" * 5000, "VLLM_MAX_MODEL_LEN='999"),
    ("LOG_MAX_FILE=0", "LOG_MAX_FILE='0' must be a positive integer"),
    ("VLLM_GPU_MEMORY_UTILIZATION=\u0660.\u0665", "VLLM_GPU_MEMORY_UTILIZATION='\u0660.\u0665' must be a fraction"),
    ("VLLM_GPU_MEMORY_UTILIZATION=0_5", "VLLM_GPU_MEMORY_UTILIZATION='0_5' must be a fraction"),
    ("VLLM_GPU_MEMORY_UTILIZATION=nan", "VLLM_GPU_MEMORY_UTILIZATION='nan' must be a fraction"),
    ("VLLM_GPUS=0,²", "VLLM_GPUS='0,²' must be 'all' or comma-separated GPU ids"),
    ("LLAMACPP_GPU_LAYERS=-2", "LLAMACPP_GPU_LAYERS='-2' must be a whole number of at least -1"),
    ("VLLM_CPU_KVCACHE_SPACE=\uff14", "VLLM_CPU_KVCACHE_SPACE='\uff14' must be a whole number"),
    ("VLLM_START_PERIOD=20 minutes", "VLLM_START_PERIOD='20 minutes' must be a duration"),
    ("VLLM_SHM_SIZE=two gigs", "VLLM_SHM_SIZE='two gigs' must be a size"),
])
def test_preflight_bad_numbers_are_named(tmp_path: Path, capsys: pytest.CaptureFixture[str], setting: str,
                                         words: str) -> None:
    d = _project(tmp_path, setting)
    assert preflight.main([str(d), "--services", "vllm,llamacpp"]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err
    hits = [ln for ln in err.splitlines() if words in ln]
    assert len(hits) == 1 and len(hits[0]) < 200, err


@pytest.mark.usefixtures("clean_env")
def test_preflight_good_numbers_pass(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    d = _project(tmp_path, "\n".join([
        "VLLM_TENSOR_PARALLEL_SIZE=2", "LLAMACPP_PARALLEL=1", "VLLM_GPU_MEMORY_UTILIZATION=0.9",
        "VLLM_GPUS=0,1", "LLAMACPP_GPU_LAYERS=-1", "VLLM_START_PERIOD=1m30s", "VLLM_SHM_SIZE=2g",
        "LOG_MAX_SIZE=20m", "LOG_MAX_FILE=3", f"VLLM_PORT={free_port()}"]))
    preflight.main([str(d), "--services", "vllm"])
    err = capsys.readouterr().err
    for key in ("PARALLEL", "UTILIZATION", "GPUS", "LAYERS", "PERIOD", "SIZE", "LOG_MAX", "VLLM_PORT"):
        assert key not in err, err


@pytest.mark.usefixtures("clean_env")
@pytest.mark.parametrize("bind", ["192.0.2.1", "fe80::1%nosuchnic9"])
def test_preflight_bind_address_not_on_this_host(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                 bind: str) -> None:
    """192.0.2.1 (TEST-NET-1) is on no host, nor an interface that does not exist: EADDRNOTAVAIL is said as
    such, once, not as ports in use."""
    d = _project(tmp_path, f"BIND_ADDRESS={bind}\nVLLM_PORT={free_port()}\nLLAMACPP_PORT={free_port()}")
    assert preflight.main([str(d), "--services", "vllm,llamacpp"]) == 1
    err = capsys.readouterr().err
    assert "already in use" not in err and "cannot be bound" not in err, err
    assert err.count(f"BIND_ADDRESS={bind} is not an address of this host") == 1, err


@pytest.mark.usefixtures("clean_env")
def test_preflight_models_dir_a_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    d = _project(tmp_path, "MODELS_DIR=/dev/null")
    assert preflight.main([str(d), "--services", "vllm"]) == 1
    assert "MODELS_DIR (/dev/null) is not a directory" in capsys.readouterr().err


@pytest.mark.usefixtures("clean_env")
def test_preflight_port_in_use_still_said(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        d = _project(tmp_path, f"BIND_ADDRESS=127.0.0.1\nVLLM_PORT={port}")
        assert preflight.main([str(d), "--services", "vllm"]) == 1
    err = capsys.readouterr().err
    assert f"port {port} on 127.0.0.1 (VLLM_PORT (vllm)) is already in use by another process" in err, err


# -- the Hugging Face token file ------------------------------------------------------------------------------
@pytest.fixture
def no_hf_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for k in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_TOKEN_PATH"):
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))


def _bad_token_file(tmp_path: Path, kind: str) -> Path:
    f = tmp_path / f"token-{kind}"
    if kind == "directory":
        f.mkdir()
    elif kind == "fifo":
        os.mkfifo(f)  # reading it would block forever
    else:
        content = {
            "not-utf8": b"\xff\xfe" + SECRET.encode("utf-16-le"),
            "non-ascii": ("hf_\u00e9" + SECRET).encode(),
            "bom": b"\xef\xbb\xbf" + SECRET.encode(),
            "control": (SECRET + "\x07").encode(),
            "empty": b"",
            "blank": b" \n\t\n",
            "two-words": f"{SECRET} {SECRET}\n".encode(),
            "huge": SECRET.encode() * 10_000,
        }[kind]
        f.write_bytes(content)
    if not f.is_dir():
        f.chmod(0o600)
    return f


KINDS = [("not-utf8", "is not UTF-8 text"), ("non-ascii", "holds non-ASCII or control characters"),
         ("bom", "holds non-ASCII or control characters"), ("control", "holds non-ASCII or control characters"),
         ("empty", "is empty"), ("blank", "is empty"), ("two-words", "holds more than one word"),
         ("huge", "is over 64 KiB"), ("directory", "is a directory"), ("fifo", "is not a regular file")]


@pytest.mark.usefixtures("no_hf_env")
@pytest.mark.parametrize(("kind", "words"), KINDS)
def test_hf_token_file_problems(tmp_path: Path, capsys: pytest.CaptureFixture[str], kind: str, words: str) -> None:
    f = _bad_token_file(tmp_path, kind)
    url = f"hf=http://127.0.0.1:{free_port()}/v1"
    assert healthcheck_main([url, "--hf-token-file", str(f)]) == 2
    line = _one_line(capsys.readouterr().err)
    assert f"--hf-token-file: token file {f} {words}" in line, line
    assert "SeCrEt" not in line


@pytest.mark.usefixtures("no_hf_env")
@pytest.mark.parametrize(("kind", "words"), KINDS)
def test_hf_token_path_problems(tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
                                kind: str, words: str) -> None:
    f = _bad_token_file(tmp_path, kind)
    monkeypatch.setenv("HF_TOKEN_PATH", str(f))
    assert healthcheck_main([f"hf=http://127.0.0.1:{free_port()}/v1"]) == 2
    line = _one_line(capsys.readouterr().err)
    assert f"HF_TOKEN_PATH: token file {f} {words}" in line, line
    assert "SeCrEt" not in line


# -- prepare-model (header checks that need no gguf library; truncated real files: integration tier) ---------
@pytest.mark.parametrize(("content", "words"), [
    (b"", "is empty, not a GGUF file"),
    (b"\x00", "is not a GGUF file"),
    (b"PK\x03\x04" + b"\x00" * 64, "is not a GGUF file"),
], ids=["empty", "one-byte", "zip"])
def test_prepare_model_not_a_gguf(tmp_path: Path, capsys: pytest.CaptureFixture[str], content: bytes,
                                  words: str) -> None:
    f = tmp_path / "m.gguf"
    f.write_bytes(content)
    assert prepare_model.main([str(f), str(tmp_path / "out")]) == 2
    line = _one_line(capsys.readouterr().err)
    assert f"{f} {words}" in line, line
    assert not (tmp_path / "out").exists()
