"""The real llama.cpp container (compose/compose.yaml with the CPU overlay, the image built offline) reads its key
file by the kit's one rule (healthchecks/exposure.py): a whitespace-only file is NO key, and whitespace around a key
(a trailing space, CRLF) is no part of it. Before, llama-server took the line " \\t\\r" as a key no client can send
(every request 401, while compose-preflight and verify read the file as no key), and " KEY \\r" instead of KEY.
tests/unit/test_blank_keys.py runs the same entrypoints (vLLM's, the gateway's too) under /bin/sh; this is the check
in the container itself. About 20 s: one llama-server start per key file, and vLLM's entrypoint in its own image
(`docker compose run`, the real secret mount) with `vllm` replaced by a recorder of VLLM_API_KEY."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import free_port

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "compose"
BIN = Path(sys.executable).parent
CACHE = Path(os.environ.get("GIK_CACHE", Path.home() / ".cache" / "gik"))
KEY = "sk-blank-" + secrets.token_hex(8)


def _status(url: str, key: str | None = None) -> int:
    """The HTTP status of GET ``url`` (with ``key`` as the Bearer key); 0 when nothing answers yet."""
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {key}"} if key else {})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return int(r.status)
    except urllib.error.HTTPError as e:
        return int(e.code)
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return 0


@pytest.fixture
def llamacpp(tmp_path: Path) -> Iterator[tuple[Path, dict[str, str], list[str]]]:
    if subprocess.run(["docker", "info"], capture_output=True).returncode != 0:
        pytest.fail("Docker engine not running: run `bash tests/setup.sh docker`", pytrace=False)
    d = tmp_path / "secrets"
    d.mkdir()
    for name in ("hf_token", "vllm_api_key", "llamacpp_api_key"):
        (d / name).write_text("")
        (d / name).chmod(0o600)
    env = {**os.environ, "COMPOSE_PROJECT_NAME": "gik-blank-" + secrets.token_hex(3),
           "COMPOSE_FILE": "compose.yaml:compose.cpu.yaml", "MODELS_DIR": str(CACHE / "models"),
           "HF_TOKEN_FILE": str(d / "hf_token"), "VLLM_API_KEY_FILE": str(d / "vllm_api_key"),
           "LLAMACPP_API_KEY_FILE": str(d / "llamacpp_api_key"), "LLAMACPP_PORT": str(free_port()),
           "BIND_ADDRESS": "127.0.0.1", "COMPOSE_PROFILES": ""}
    compose = ["docker", "compose"]
    try:
        yield d / "llamacpp_api_key", env, compose
    finally:
        subprocess.run([*compose, "down", "-v", "-t", "5"], capture_output=True, env=env, timeout=300, cwd=COMPOSE)


def _start(compose: list[str], env: dict[str, str]) -> str:
    up = subprocess.run([*compose, "up", "-d", "--no-build", "--pull", "never", "--force-recreate", "llamacpp"],
                        capture_output=True, text=True, env=env, timeout=300, cwd=COMPOSE)
    assert up.returncode == 0, up.stderr[-3000:]
    url = f"http://127.0.0.1:{env['LLAMACPP_PORT']}"
    deadline = time.monotonic() + 180
    while _status(url + "/health") != 200 and time.monotonic() < deadline:  # 503 while the model loads
        time.sleep(0.2)
    if _status(url + "/health") != 200:
        logs = subprocess.run([*compose, "logs", "llamacpp"], capture_output=True, text=True, env=env, timeout=60,
                              cwd=COMPOSE)
        pytest.fail(f"llama-server did not become healthy:\n{logs.stdout[-3000:]}{logs.stderr[-1000:]}")
    return url


def test_llamacpp_container_reads_a_blank_key_file_as_no_key_and_strips_a_padded_key(
        llamacpp: tuple[Path, dict[str, str], list[str]]) -> None:
    key_file, env, compose = llamacpp
    key_file.write_text(" \t\r\n\n")  # whitespace only: no key, as compose-preflight and verify read it
    url = _start(compose, env)
    assert _status(url + "/v1/models") == 200

    key_file.write_text(f"# the lab's key\r\n  {KEY} \r\n\n")  # the key, padded, after a comment
    url = _start(compose, env)
    assert _status(url + "/v1/models") == 401
    assert _status(url + "/v1/models", "wrong") == 401
    assert _status(url + "/v1/models", KEY) == 200
    # healthcheck (what verify runs) reads the same key from a file written with the whitespace around it
    hc_key = key_file.parent / "verify_copy"
    hc_key.write_text(f" {KEY}\r\n")
    hc_key.chmod(0o600)
    # (--timeout 90, default 30: a real engine on CI's two loaded cores answered slower once; the key is tested here)
    r = subprocess.run([str(BIN / "healthcheck"), f"llamacpp={url}", "--api-key-file", f"llamacpp={hc_key}",
                        "--model", "smollm2:135m", "--no-expect-gpu", "--no-diagnose", "--json", "--timeout", "90"],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    logs = subprocess.run([*compose, "logs", "llamacpp"], capture_output=True, text=True, env=env, timeout=60,
                              cwd=COMPOSE)
    assert KEY not in logs.stdout + logs.stderr + r.stdout + r.stderr


@pytest.mark.parametrize(("content", "expected"), [(" \t\r\n\n", "unset"), (f"\r\n  {KEY} \r\n", f"key=[{KEY}]")],
                         ids=["blank", "padded"])
def test_vllm_entrypoint_in_its_image_reads_a_blank_key_file_as_no_key(
        llamacpp: tuple[Path, dict[str, str], list[str]], tmp_path: Path, content: str, expected: str) -> None:
    key_file, env, compose = llamacpp
    vllm_key = key_file.parent / "vllm_api_key"
    vllm_key.write_text(content)
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "vllm").write_text('#!/bin/sh\nif [ "${VLLM_API_KEY+set}" = set ]; then printf "key=[%s]" "$VLLM_API_KEY"; '
                               "else printf unset; fi\n")
    (fake / "vllm").chmod(0o755)
    r = subprocess.run([*compose, "run", "--rm", "--no-deps", "-T", "-v", f"{fake}:/gik-bin:ro", "-e",
                        "PATH=/gik-bin:/usr/bin:/bin", "vllm"], capture_output=True, text=True, env=env, timeout=300,
                       cwd=COMPOSE)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.strip().splitlines()[-1] == expected
