"""prepare-model on real GGUF files cut short or corrupted (the kit's SmolLM2 GGUF, run with the vLLM venv that
has gguf/transformers/torch): one line naming the file, exit 2, never a struct.error traceback; the intact
file passes the same check. CI cost: ~3 s per case (interpreter start and the gguf import; nothing converts)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from conftest import GGUF, VLLM_PY

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


def _need() -> None:
    for p in (VLLM_PY, GGUF):
        if not p.exists():
            pytest.fail(f"{p} is missing: run `bash tests/setup.sh` first", pytrace=False)


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(VLLM_PY), *args], capture_output=True, text=True, timeout=300, cwd=ROOT,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})


def _cut(data: bytes, case: str) -> bytes:
    if case == "header-only":
        return data[:24]
    if case == "mid-metadata":
        return data[:4096]
    if case == "first-megabyte":
        return data[: 1 << 20]
    if case == "last-kilobyte-missing":
        return data[:-1000]
    if case == "absurd-tensor-count":  # bytes 8-15: the tensor count (little-endian uint64)
        return data[:8] + (1 << 62).to_bytes(8, "little") + data[16:]
    raise AssertionError(case)


@pytest.mark.parametrize("case", ["header-only", "mid-metadata", "first-megabyte", "last-kilobyte-missing",
                                  "absurd-tensor-count"])
def test_prepare_model_truncated_or_corrupt_gguf(tmp_path: Path, case: str) -> None:
    _need()
    bad = tmp_path / f"{case}.gguf"
    bad.write_bytes(_cut(GGUF.read_bytes(), case))
    out = tmp_path / "out"
    r = _run("-m", "healthchecks.cli.prepare_model", str(bad), str(out))
    assert r.returncode == 2, r.stderr[-2000:]
    assert "Traceback" not in r.stderr, r.stderr[-2000:]
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith(f"prepare-model: {bad} is truncated"), r.stderr
    assert not out.exists()


def test_intact_gguf_passes_the_check() -> None:
    _need()
    r = _run("-c", "import sys; from pathlib import Path; from healthchecks.modelprep import check_gguf; "
                   "check_gguf(Path(sys.argv[1])); print('ok')", str(GGUF))
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr[-2000:]
