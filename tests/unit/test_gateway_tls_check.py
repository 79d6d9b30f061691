"""roles/gateway checks the lab's TLS pair on the controller before any change (tasks/validate.yml): both files
exist, and compose-preflight's own check (healthchecks/preflight.py, through the role's gik_gateway_tls_errors
filter) loads them as the server does: a key of another certificate or an encrypted key stops the run naming
gateway_tls_cert_src / gateway_tls_key_src, with no private key in the output and nothing written on the host."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

pytestmark = pytest.mark.unit
ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
_spec = importlib.util.spec_from_file_location(
    "gik_gateway_tls", ROOT / "roles" / "gateway" / "filter_plugins" / "gik_gateway_tls.py")
assert _spec and _spec.loader
tls = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(tls)
PLAY = [{"name": "gateway", "hosts": "localhost", "connection": "local", "gather_facts": False, "become": False,
         "roles": ["gateway"]}]


def _pair(tmp: Path, name: str, *extra: str) -> tuple[Path, Path]:
    cert, key = tmp / f"{name}.crt", tmp / f"{name}.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-days", "2", "-subj", "/CN=gw.lab",
                    "-keyout", str(key), "-out", str(cert), *(extra or ("-nodes",))],
                   check=True, capture_output=True, timeout=120)
    return cert, key


@pytest.fixture(scope="module")
def pems(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("tls")
    cert, key = _pair(tmp, "good")
    _, other_key = _pair(tmp, "other")
    _, enc_key = _pair(tmp, "enc", "-passout", "pass:secret")
    enc_cert = tmp / "enc.crt"
    return {"cert": cert, "key": key, "other_key": other_key, "enc_cert": enc_cert, "enc_key": enc_key}


def test_the_filter_is_preflights_check(pems: dict[str, Path]) -> None:
    assert tls.gik_gateway_tls_errors(pems["cert"].read_text(), pems["key"].read_text()) == []
    mismatch = tls.gik_gateway_tls_errors(pems["cert"].read_text(), pems["other_key"].read_text())
    assert len(mismatch) == 1 and "the key does not belong to the certificate" in mismatch[0]
    assert "gateway_tls_cert_src" in mismatch[0] and "gateway_tls_key_src" in mismatch[0]
    assert "/tmp" not in mismatch[0] and "GATEWAY_TLS" not in mismatch[0]
    enc = tls.gik_gateway_tls_errors(pems["enc_cert"].read_text(), pems["enc_key"].read_text())
    assert len(enc) == 1 and "unencrypted private key" in enc[0]
    empty = tls.gik_gateway_tls_errors("", pems["key"].read_text())
    assert len(empty) == 1 and "gateway_tls_cert_src is empty" in empty[0]


def _run(tmp: Path, extra: dict[str, Any], *args: str) -> subprocess.CompletedProcess[str]:
    (tmp / "play.yml").write_text(yaml.safe_dump(PLAY))
    return subprocess.run([str(BIN / "ansible-playbook"), "-i", "localhost,", str(tmp / "play.yml"), "-e",
                           json.dumps({"inference_stack_dir": str(tmp / "stack"),
                                       "vault_gateway_master_key": "sk-tls-check", **extra}), *args],
                          cwd=ROOT, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "ANSIBLE_FORCE_COLOR": "0", "ANSIBLE_ROLES_PATH": str(ROOT / "roles"),
                               "ANSIBLE_PYTHON_INTERPRETER": sys.executable})


@pytest.mark.parametrize(("case", "words"), [
    ("missing_key", "gateway_tls_key_src"),
    ("missing_cert", "gateway_tls_cert_src"),
    ("mismatch", "the key does not belong to the certificate"),
    ("encrypted", "unencrypted private key"),
])
def test_a_bad_pair_stops_the_role_before_any_change(tmp_path: Path, pems: dict[str, Path], case: str,
                                                     words: str) -> None:
    cert, key = {"missing_key": (pems["cert"], tmp_path / "nope.key"),
                 "missing_cert": (tmp_path / "nope.crt", pems["key"]),
                 "mismatch": (pems["cert"], pems["other_key"]),
                 "encrypted": (pems["enc_cert"], pems["enc_key"])}[case]
    r = _run(tmp_path, {"gateway_tls_cert_src": str(cert), "gateway_tls_key_src": str(key)})
    assert r.returncode != 0
    assert words in r.stdout, r.stdout[-3000:]
    assert not (tmp_path / "stack").exists(), "a change was made before the check"
    assert "PRIVATE KEY" not in r.stdout + r.stderr
    assert "Traceback" not in r.stdout + r.stderr


def test_check_diff_on_a_fresh_host_shows_no_secret(tmp_path: Path, pems: dict[str, Path]) -> None:
    """--check --diff on a fresh host (nothing written, compose not run): every secret the role copies (the TLS key,
    the master key, the engines' keys, the fallback's token) stays out of the diff and the log."""
    secrets = {"vault_gateway_master_key": "sk-diff-master-0123", "vault_vllm_api_key": "sk-diff-vllm-0123\n",
               "vault_llamacpp_api_key": "sk-diff-llama-0123", "vault_hf_token": "hf_diff_token_0123",
               "gateway_hf_fallback_model": "org/model"}
    r = _run(tmp_path, {"gateway_tls_cert_src": str(pems["cert"]), "gateway_tls_key_src": str(pems["key"]),
                        **secrets}, "--check", "--diff", "-v")
    assert r.returncode == 0, r.stdout[-4000:]
    assert not (tmp_path / "stack").exists()
    out = r.stdout + r.stderr
    assert "PRIVATE KEY" not in out
    for name, value in secrets.items():
        if name.startswith("vault_"):
            assert value.strip() not in out, name
    assert "BEGIN CERTIFICATE" not in out  # the certificate is copied with its key, out of the diff too
