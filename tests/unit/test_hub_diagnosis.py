"""healthcheck's diagnosis of the Hugging Face Hub refusing vLLM's model: each refusal named with its cause and a fix
that names the kit setting, from text the real producers wrote here.

- The model check: the real script of the compose service ``vllm-model-check`` (taken from compose/compose.yaml)
  run with the real ``huggingface_hub`` against the Hub mirror (tests/doubles/hub_mirror.py: a gated repository
  answers 401/403 ``X-Error-Code: GatedRepo`` as the Hub does). tests/e2e/test_hub_diagnosis_deploy.py runs the same
  service in its container and vLLM itself, and diagnoses their containers through ``healthcheck``.
- huggingface_hub's own errors, as vLLM logs them (a traceback): raised here by ``hf_hub_download`` against the
  same mirror. Their texts come from huggingface_hub's ``utils/_http.py`` ``hf_raise_for_status`` ("Cannot access
  gated repo for url {url}.", "Repository Not Found for url: {url}.", "Revision Not Found for url: {url}.", then
  the Hub's X-Error-Message) and ``file_download.py`` ("An error happened while trying to locate the file on the
  Hub and we cannot find the requested files in the local cache."); the Hub's messages ("... You must have access
  to it and be authenticated to access it. Please log in.", "... you are not in the authorized list.", "Invalid
  credentials in Authorization header") are the ones huggingface.co sends and hub_mirror repeats.
"""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import sys
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from doubles import hub_mirror

from healthchecks.diagnose import match_cause

pytestmark = pytest.mark.unit
ROOT = Path(__file__).resolve().parents[2]
REPO = "gik-lab/Gated-Tiny"
GOOD, OTHER = "hf_" + secrets.token_hex(12), "hf_" + secrets.token_hex(12)
REVOKED = "hf_revoked" + secrets.token_hex(8)

# (case, cause, words of the fix: the kit setting that fixes it)
CASES = [
    ("no token", "gated model and no Hugging Face token", "vault_hf_token"),
    ("token not granted", "Hugging Face token not granted access to the gated model", "vault_hf_token"),
    ("token rejected", "Hugging Face token rejected by the Hub", "vault_hf_token"),
    ("unknown repository", "model not on the Hub", "inference_stack_vllm_model"),
    ("unknown revision", "model not on the Hub", "inference_stack_vllm_model_revision"),
    ("Hub unreachable", "Hugging Face Hub unreachable", "inference_stack_hf_endpoint"),
]
_TOKEN = {"no token": "", "token not granted": OTHER, "token rejected": REVOKED}


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    repo = tmp_path_factory.mktemp("repo")
    (repo / "config.json").write_text('{"model_type": "llama"}\n')
    (repo / "tokenizer.json").write_text("{}\n")
    server = hub_mirror.serve({REPO: repo}, gated={REPO}, grants={GOOD: {REPO}, OTHER: set()})
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # closed once the socket is: nothing listens there


def _where(case: str, hub: str) -> tuple[str, str, str, str]:
    """(endpoint, repository, revision, token) for a case."""
    endpoint = f"http://127.0.0.1:{_closed_port()}" if case == "Hub unreachable" else hub
    repo = "gik-lab/no-such-model" if case == "unknown repository" else REPO
    revision = "v9.9" if case == "unknown revision" else "main"
    return endpoint, repo, revision, _TOKEN.get(case, GOOD)


def model_check(hub: str, case: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """The vllm-model-check service's own script (compose/compose.yaml), with the environment compose gives it."""
    service = yaml.safe_load((ROOT / "compose" / "compose.yaml").read_text())["services"]["vllm-model-check"]
    script = service["entrypoint"][-1]
    endpoint, repo, revision, token = _where(case, hub)
    secret = tmp_path / "hf_token"
    secret.write_text(token)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGING")) and "proxy" not in k.lower()}
    env.update(VLLM_MODEL=repo, VLLM_MODEL_REVISION=revision, HF_HUB_OFFLINE="0", HF_ENDPOINT=endpoint,
               HF_TOKEN_PATH=str(secret), HF_HOME=str(tmp_path / "hf"), HF_HUB_DISABLE_TELEMETRY="1")
    return subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)


def hub_error(hub: str, case: str, tmp_path: Path) -> str:
    """huggingface_hub's exception for the case, as a traceback in vLLM's log."""
    from huggingface_hub import hf_hub_download

    endpoint, repo, revision, token = _where(case, hub)
    kwargs: dict[str, Any] = {"endpoint": endpoint, "revision": revision, "cache_dir": str(tmp_path / "cache"),
                              "token": token or False, "etag_timeout": 5}
    try:
        hf_hub_download(repo, "config.json", **kwargs)
    except Exception as exc:  # the error is the point
        return "".join(traceback.format_exception(exc))
    raise AssertionError(f"{case}: the download succeeded")


@pytest.mark.parametrize(("case", "cause", "fix"), CASES, ids=[c[0] for c in CASES])
def test_the_model_checks_refusals_are_diagnosed(hub: str, tmp_path: Path, case: str, cause: str, fix: str) -> None:
    r = model_check(hub, case, tmp_path)
    assert r.returncode == 1, r.stdout + r.stderr
    lines = r.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("vllm-model-check: "), r.stderr  # one line, no traceback
    found = match_cause(f"INFO starting\n{r.stderr}", "vllm")
    assert found is not None and found.name == cause, (r.stderr, found)
    assert fix in found.fix
    for secret in (GOOD, OTHER, REVOKED):
        assert secret not in r.stdout + r.stderr


@pytest.mark.parametrize(("case", "cause", "fix"), CASES, ids=[c[0] for c in CASES])
def test_huggingface_hub_errors_as_vllm_logs_them_are_diagnosed(hub: str, tmp_path: Path, case: str, cause: str,
                                                               fix: str, monkeypatch: pytest.MonkeyPatch) -> None:
    import huggingface_hub.utils._http as hf_http

    monkeypatch.setattr(hf_http.time, "sleep", lambda _s: None)  # its 5 retries of a refused connection take 23 s
    logs = hub_error(hub, case, tmp_path)
    # the texts of huggingface_hub (utils/_http.py hf_raise_for_status, file_download.py) and the Hub's messages
    words = {"no token": ["Cannot access gated repo for url", "You must have access to it and be authenticated"],
             "token not granted": ["Cannot access gated repo for url", "you are not in the authorized list"],
             "token rejected": ["Invalid credentials in Authorization header"],
             "unknown repository": ["Repository Not Found for url"],
             "unknown revision": ["Revision Not Found for url"],
             "Hub unreachable": ["An error happened while trying to locate the file on the Hub"]}[case]
    assert all(w in logs for w in words), logs
    found = match_cause(f"INFO vLLM API server\n{logs}ValueError: the model could not be loaded\n", "vllm")
    assert found is not None and found.name == cause, (logs, found)
    assert fix in found.fix


def test_a_hub_that_grants_the_token_is_no_cause(hub: str, tmp_path: Path) -> None:
    """The check passes with the granted token (it then waits, as the service does: stopped here after its line)."""
    from huggingface_hub import hf_hub_download

    path = hf_hub_download(REPO, "config.json", endpoint=hub, token=GOOD, cache_dir=str(tmp_path / "cache"))
    assert Path(path).read_text().startswith("{")
    assert match_cause("vllm-model-check: gik-lab/Gated-Tiny can be downloaded from http://x with the token",
                       "vllm") is None
