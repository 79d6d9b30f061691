"""healthcheck's diagnosis of a real local container: state, restart count and a named cause from its logs."""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import free_port

pytestmark = pytest.mark.e2e
BIN = Path(sys.executable).parent



def test_crashing_engine_is_diagnosed_with_cause_and_fix(tmp_path: Path) -> None:
    if subprocess.run(["docker", "image", "inspect", "local/llama.cpp:server"], capture_output=True).returncode:
        pytest.fail("local/llama.cpp:server missing: run `bash compose/images/build.sh`", pytrace=False)
    name = "gik-diag-" + secrets.token_hex(3)
    port = free_port()
    subprocess.run(["docker", "run", "-d", "--name", name, "--restart", "on-failure:2", "-p", f"127.0.0.1:{port}:8080",
                    "-v", f"{tmp_path}:/models:ro", "local/llama.cpp:server", "-m", "/models/missing.gguf",
                    "--host", "0.0.0.0", "--port", "8080"], check=True, capture_output=True)
    try:
        # let it crash and restart until on-failure:2 gives up (3 container starts: up to 240 s, as on CI's two loaded
        # cores a start can take tens of seconds; a deadline passed before the first restart fails restart_count)
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            state = json.loads(subprocess.run(["docker", "inspect", name], capture_output=True, text=True).stdout)[0]
            if state["RestartCount"] >= 1 and not state["State"]["Running"]:
                break
            time.sleep(1)
        r = subprocess.run([str(BIN / "healthcheck"), f"llamacpp=http://127.0.0.1:{port}", "--json", "--timeout", "3"],
                           capture_output=True, text=True, timeout=120)
        assert r.returncode == 1
        d = json.loads(r.stdout)["endpoints"][0]["diagnosis"]
        assert d["container"] == name
        assert d["state"] in ("exited", "restarting")
        assert d["restart_count"] >= 1
        assert d["cause"] == "model not found"
        assert "model name or local path" in d["fix"]
        human = subprocess.run([str(BIN / "healthcheck"), f"llamacpp=http://127.0.0.1:{port}", "--timeout", "3"],
                               capture_output=True, text=True, timeout=120)
        assert f"container {name}" in human.stdout and "cause: model not found" in human.stdout
    finally:
        subprocess.run(["docker", "rm", "-f", name], capture_output=True)
