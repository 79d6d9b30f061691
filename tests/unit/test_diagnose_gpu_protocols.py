from __future__ import annotations

import pytest

from healthchecks.diagnose import match_cause
from healthchecks.protocols import ProtocolError, error_reason, parse_json

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(("log", "cause"), [
    ("huggingface_hub.errors.GatedRepoError: 401 Client Error. Cannot access gated repo for url https://x",
     "gated or unauthorized model"),
    ("torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB", "CUDA out of memory"),
    ("ValueError: No available memory for the cache blocks. Try increasing `gpu_memory_utilization`",
     "CUDA out of memory"),
    ("RuntimeError: The NVIDIA driver on your system is too old (found version 11040).",
     "NVIDIA driver too old for the image"),
    ("nvidia-container-cli: requirement error: unsatisfied condition: cuda>=12.4, please update your driver",
     "NVIDIA driver too old for the image"),
    ("Failed to initialize NVML: Unknown Error", "GPU lost (NVML unknown error)"),
    ("OSError: [Errno 98] Address already in use", "address already in use"),
    ("Error: could not select device driver \"\" with capabilities: [[gpu]]", "no GPU runtime"),
    ("OSError: /models/x does not appear to have a file named config.json", "model not found"),
    ("llama_model_load: error loading model: failed to load model '/models/x.gguf'", "model not found"),
])
def test_log_signatures(log: str, cause: str) -> None:
    found = match_cause("INFO starting\n" + log + "\nINFO shutting down")
    assert found is not None and found.name == cause and found.fix


def test_no_cause_in_clean_logs() -> None:
    assert match_cause("INFO: Application startup complete.\nINFO: 200 OK") is None


def test_latest_line_wins() -> None:
    logs = "OSError: [Errno 98] Address already in use\ntorch.OutOfMemoryError: CUDA out of memory"
    assert match_cause(logs).name == "CUDA out of memory"  # type: ignore[union-attr]


def test_error_reasons() -> None:
    assert error_reason(404, '{"error": "model \\"x\\" not found, try pulling it first"}', "application/json") \
        == 'HTTP 404: model "x" not found, try pulling it first'
    assert error_reason(400, '{"error": {"message": "bad\\nthing", "type": "x"}}', "application/json") \
        == "HTTP 400: bad thing"
    assert "HTML page (502 Bad Gateway)" in error_reason(502, "<html><title>502 Bad Gateway</title>", "text/html")
    assert error_reason(500, "", "text/plain") == "HTTP 500: (empty body)"
    with pytest.raises(ProtocolError, match="truncated JSON"):
        parse_json('{"a": [1, 2', "x")
    with pytest.raises(ProtocolError, match="invalid JSON"):
        parse_json('{"a": nope}', "x")
    with pytest.raises(ProtocolError, match="empty body"):
        parse_json("  ", "x")
