"""healthcheck names the Hugging Face Hub's refusal of vLLM's model, from the real containers' logs.

A gated repository on the Hub mirror (tests/doubles/hub_mirror.py, faithful to huggingface_hub's protocol: 401/403
``GatedRepo``, 401 ``Invalid credentials in Authorization header``) on this machine's docker0 address, which
containers on any bridge network reach. Two producers of the log text, both real:

- the compose service ``vllm-model-check`` (compose/compose.yaml with the CPU overlay, started by ``docker compose
  up vllm`` as vLLM's dependency): it stops with one line, vLLM never starts, and healthcheck's diagnosis reads the
  check's log through the engine container's compose project (stack.yml ``model_check``);
- vLLM itself (``vllm serve <repo>`` in the same image, no check before it), which dies with huggingface_hub's
  GatedRepoError / HfHubHTTPError traceback.

Each case: no token, a token not granted access, a token the Hub rejects. healthcheck must name the cause and a fix
naming vault_hf_token, and no token may appear in any output.
"""

from __future__ import annotations

import json
import re
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import free_port
from doubles import hub_mirror
from lab.connected import docker0_address

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "compose"
BIN = Path(sys.executable).parent
REPO = "gik-lab/Gated-SmolLM2"
GOOD, OTHER = "hf_" + secrets.token_hex(12), "hf_" + secrets.token_hex(12)
REVOKED = "hf_revoked" + secrets.token_hex(8)
IMAGE = re.search(r"\$\{VLLM_IMAGE:-([^}]+)\}", (COMPOSE / "compose.cpu.yaml").read_text()).group(1)  # type: ignore[union-attr]

# (case, the token in the secret, the model check's line, the cause healthcheck names)
CASES = [
    ("no token", "", f"vllm-model-check: {REPO} is a gated repository and no Hugging Face token was given",
     "gated model and no Hugging Face token"),
    ("token not granted", OTHER, f"vllm-model-check: {REPO} is a gated repository and the token in the hf_token "
                                 "secret was not granted access to it", "Hugging Face token not granted access to "
                                                                         "the gated model"),
    ("token rejected", REVOKED, "rejected the token in the hf_token secret (invalid or revoked)",
     "Hugging Face token rejected by the Hub"),
]
# what huggingface_hub (utils/_http.py hf_raise_for_status) and the Hub write into vLLM's log for each case
VLLM_WORDS = {"no token": ["GatedRepoError", "Cannot access gated repo for url", "Please log in"],
              "token not granted": ["GatedRepoError", "you are not in the authorized list"],
              "token rejected": ["Invalid credentials in Authorization header"]}


def sh(*args: str, check: bool = True, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    r = subprocess.run(args, capture_output=True, text=True, timeout=timeout)
    if check and r.returncode != 0:
        raise AssertionError(f"{' '.join(args)}: {r.stdout[-2000:]}{r.stderr[-2000:]}")
    return r


def diagnosis(port: int) -> tuple[dict, str]:
    r = subprocess.run([str(BIN / "healthcheck"), f"vllm=http://127.0.0.1:{port}", "--json", "--timeout", "3"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 1, r.stdout + r.stderr
    human = subprocess.run([str(BIN / "healthcheck"), f"vllm=http://127.0.0.1:{port}", "--timeout", "3"],
                           capture_output=True, text=True, timeout=120)
    return json.loads(r.stdout)["endpoints"][0]["diagnosis"] or {}, r.stdout + r.stderr + human.stdout + human.stderr


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if sh("docker", "image", "inspect", IMAGE, check=False).returncode:
        pytest.fail(f"{IMAGE} missing: run `bash compose/images/build.sh`", pytrace=False)
    repo = tmp_path_factory.mktemp("gated-repo")
    (repo / "config.json").write_text('{"architectures": ["LlamaForCausalLM"], "model_type": "llama"}\n')
    server = hub_mirror.serve({REPO: repo}, gated={REPO}, grants={GOOD: {REPO}, OTHER: set()},
                              host=docker0_address())
    try:
        yield f"http://{server.server_address[0]}:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_the_model_checks_refusal_is_diagnosed_from_the_compose_service(hub: str, tmp_path: Path) -> None:
    project = "gik-hubdiag-" + secrets.token_hex(3)
    port = free_port()
    token_file, key_file = tmp_path / "hf_token", tmp_path / "vllm_api_key"
    key_file.write_text("")
    (tmp_path / "models").mkdir()
    env_file = tmp_path / ".env"
    env_file.write_text("\n".join([
        f"VLLM_PORT={port}", f"VLLM_MODEL={REPO}", "HF_HUB_OFFLINE=0",
        f"HF_ENDPOINT={hub}", f"HF_TOKEN_FILE={token_file}", f"VLLM_API_KEY_FILE={key_file}",
        f"MODELS_DIR={tmp_path / 'models'}", ""]))
    compose = ["docker", "compose", "--project-directory", str(COMPOSE), "-f", str(COMPOSE / "compose.yaml"),
               "-f", str(COMPOSE / "compose.cpu.yaml"), "--env-file", str(env_file), "-p", project]
    try:
        for case, token, line, cause in CASES:
            token_file.write_text(token)
            up = sh(*compose, "up", "-d", "--force-recreate", "vllm", check=False, timeout=300)
            assert up.returncode != 0, f"{case}: vLLM started: {up.stdout[-2000:]}{up.stderr[-2000:]}"
            logs = sh(*compose, "logs", "--no-color", "vllm-model-check").stdout
            assert line in logs, f"{case}: {logs[-2000:]}\n{up.stdout[-2000:]}{up.stderr[-2000:]}"
            d, out = diagnosis(port)
            assert d.get("cause") == cause, f"{case}: {d}"
            assert "vault_hf_token" in d["fix"] and d["state"] == "created", d  # vLLM never ran
            assert f"cause: {cause}" in out
            for secret in (GOOD, OTHER, REVOKED):
                assert secret not in out + logs + up.stdout + up.stderr
    finally:
        sh(*compose, "down", "-v", "--remove-orphans", check=False, timeout=300)


def test_vllms_own_hub_errors_are_diagnosed(hub: str, tmp_path: Path) -> None:
    """vLLM asked for the gated repository itself: each container dies with huggingface_hub's error in its log."""
    runs: dict[str, tuple[str, int, str]] = {}
    try:
        for case, token, _, cause in CASES:
            name, port = "gik-hubdiag-vllm-" + secrets.token_hex(3), free_port()
            token_file = tmp_path / f"hf_token-{len(runs)}"
            token_file.write_text(token)
            token_file.chmod(0o644)
            sh("docker", "run", "-d", "--name", name, "-p", f"127.0.0.1:{port}:8000", "-e", "HF_HUB_OFFLINE=0",
               "-e", f"HF_ENDPOINT={hub}", "-e", "HF_TOKEN_PATH=/run/secrets/hf_token",
               "-e", "VLLM_CPU_KVCACHE_SPACE=1", "-e", "HF_HUB_DISABLE_TELEMETRY=1",
               "-v", f"{token_file}:/run/secrets/hf_token:ro", IMAGE, REPO,
               "--host", "0.0.0.0", "--port", "8000", "--enforce-eager", "--dtype", "bfloat16")
            runs[case] = (name, port, cause)
        deadline = time.monotonic() + 300
        for case, (name, port, cause) in runs.items():
            while time.monotonic() < deadline and sh("docker", "inspect", "-f", "{{.State.Running}}",
                                                     name).stdout.strip() == "true":
                time.sleep(2)
            logs = sh("docker", "logs", name).stdout + sh("docker", "logs", name).stderr
            assert all(w in logs for w in VLLM_WORDS[case]), f"{case}: {logs[-3000:]}"
            d, out = diagnosis(port)
            assert d.get("container") == name and d.get("state") == "exited", d
            assert d.get("cause") == cause and "vault_hf_token" in d["fix"], f"{case}: {d}\n{logs[-3000:]}"
            for secret in (GOOD, OTHER, REVOKED):
                assert secret not in out + logs
    finally:
        for name, _, _ in runs.values():
            sh("docker", "rm", "-f", name, check=False)
