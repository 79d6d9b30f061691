"""``healthcheck`` (the console script, as deployers and CI call it) against the LiteLLM double
(tests/doubles/litellm_double.py: the REAL LiteLLM 1.110.2 proxy's replies to every request healthcheck makes,
captured from a lab gateway configured by healthchecks/gateway.py with its Hugging Face Inference Providers
fallback, tests/fixtures/gateway/capture_lab.py).

- On a pipe (no terminal, no COLUMNS) the table is whole: one line per check, every reason uncut."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from doubles import litellm_double

pytestmark = pytest.mark.unit
BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def key_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    f = tmp_path_factory.mktemp("gw") / "gateway_master_key"
    f.write_text(litellm_double.MASTER_KEY + "\n")
    f.chmod(0o600)
    return f


@pytest.fixture(scope="module")
def with_dead() -> Iterator[str]:
    """The lab gateway as captured: one host's llama.cpp down, LiteLLM reports it unhealthy."""
    server = litellm_double.serve()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def healthcheck(url: str, key_file: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    """The console script on pipes, with no terminal width to go by (COLUMNS unset)."""
    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"}
    return subprocess.run([str(BIN / "healthcheck"), f"gateway={url}", "--api-key-file", f"gateway={key_file}",
                           "--no-diagnose", *argv], capture_output=True, text=True, timeout=120, env=env)


def rows(r: subprocess.CompletedProcess[str]) -> dict[str, dict[str, Any]]:
    assert "Traceback" not in r.stdout + r.stderr, r.stderr
    [ep] = json.loads(r.stdout)["endpoints"]
    return {c["name"]: c for c in ep["checks"]}


@pytest.fixture(scope="module")
def dead_json(with_dead: str, key_file: Path) -> subprocess.CompletedProcess[str]:
    return healthcheck(with_dead, key_file, "--json")


def test_table_on_a_pipe_has_every_row_whole(with_dead: str, key_file: Path,
                                             dead_json: subprocess.CompletedProcess[str]) -> None:
    """rich gives a console without a terminal 80 columns: the reasons and the long route names were folded over
    several lines of their cells (the integration test had to set COLUMNS=200)."""
    want = rows(dead_json)
    r = healthcheck(with_dead, key_file)
    assert r.returncode == 1 and "Traceback" not in r.stdout + r.stderr, r.stderr
    body = [line for line in r.stdout.splitlines() if line.startswith("│")]
    assert len(body) == len(want), r.stdout  # one line per check: nothing folded onto a second line
    for name, check in want.items():
        line = next((x for x in body if f"│ {name} " in x), None)
        assert line is not None, f"no line with the whole check name {name!r}:\n{r.stdout}"
        assert f"│ {check['status']} " in line and check["reason"] in line, f"{name}: {line}"
    assert f"gateway@127.0.0.1:{with_dead.rsplit(':', 1)[1]}" in body[0] and "LiteLLM 1.110.2" in body[0]
