"""roles/gateway's own Jinja rendered by a real local ansible-playbook run (its tasks/validate.yml, the checks every
gateway host passes before any change, and vars/main.yml):

- a lab gateway reaches an upstream host's own gateway over https exactly when that host has the lab's certificate
  and key (gateway_lab_hosts[host].tls, read by healthchecks/gateway.py lab_upstreams);
- the Hugging Face token goes to the gateway only with gateway_hf_fallback_model set, and a fallback without a
  token (empty or blank) stops the run naming vault_hf_token and gateway_hf_fallback_model;
- the engines' keys are written as hf_secret writes them (gik_key_text: a `!vault |` value's newline removed);
- compose v1 gets gateway.env's settings as environment (docker-compose 1.29 reads one env file: the stack's .env).
"""

from __future__ import annotations

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
KEY = "sk-vars-" + "0" * 16
SHOW = ["gateway_lab_hosts", "gateway_hf_token", "gateway_key_values", "gateway_env_vars", "gateway_config",
        "gateway_files_digest"]


def _render(tmp: Path, hosts: dict[str, dict[str, Any]], gateway: str, extra: dict[str, Any]) -> tuple[
        subprocess.CompletedProcess[str], dict[str, Any]]:
    common = {"ansible_connection": "local", "ansible_python_interpreter": sys.executable,
              "vault_gateway_master_key": KEY}
    inv = tmp / "hosts.yml"
    inv.write_text(yaml.safe_dump({"all": {"vars": common, "children": {
        "gpu_hosts": {"hosts": hosts}, "gateway_hosts": {"hosts": {gateway: hosts.get(gateway)}}}}}))
    out = tmp / "vars.json"
    play = [{"name": "render", "hosts": gateway, "gather_facts": False, "tasks": [
        {"ansible.builtin.import_role": {"name": "gateway", "tasks_from": "validate"}},
        {"ansible.builtin.copy": {"content": "{{ {" + ", ".join(f"'{v}': {v}" for v in SHOW) + "} | to_json }}",
                                  "dest": str(out), "mode": "0600"}},
    ]}]
    (tmp / "play.yml").write_text(yaml.safe_dump(play))
    r = subprocess.run([str(BIN / "ansible-playbook"), "-i", str(inv), str(tmp / "play.yml"), "-e",
                        json.dumps({"gateway_kit_root": str(ROOT), "inference_stack_files_salt": "5a17" * 16,
                                    **extra})], cwd=ROOT,
                       capture_output=True, text=True, timeout=300,
                       env={**os.environ, "ANSIBLE_ROLES_PATH": str(ROOT / "roles"), "ANSIBLE_FORCE_COLOR": "0"})
    return r, (json.loads(out.read_text()) if out.exists() else {})


def test_a_lab_gateway_reaches_a_host_gateway_with_the_labs_certificate_over_https(tmp_path: Path) -> None:
    hosts: dict[str, Any] = {
        "tlshost": {"ansible_host": "10.9.0.11", "gateway_enabled": True, "gateway_port": 4443,
                    "gateway_bind_address": "0.0.0.0", "inference_stack_engines": ["llamacpp"],
                    "gateway_tls_cert_src": "/lab/gw.crt", "gateway_tls_key_src": "/lab/gw.key"},
        "plainhost": {"ansible_host": "10.9.0.12", "gateway_enabled": True, "gateway_bind_address": "0.0.0.0",
                      "inference_stack_engines": ["llamacpp"]},
        # a certificate without its key is no TLS (the host's own role refuses it)
        "halfhost": {"ansible_host": "10.9.0.13", "gateway_enabled": True, "gateway_bind_address": "0.0.0.0",
                     "inference_stack_engines": ["llamacpp"], "gateway_tls_cert_src": "/lab/gw.crt"},
        # no gateway of its own: its engines at their ports, no tls entry
        "bare": {"ansible_host": "10.9.0.14", "inference_stack_bind_address": "0.0.0.0",
                 "inference_stack_engines": ["llamacpp"]},
    }
    r, got = _render(tmp_path, hosts, "labgw", {"gateway_mode": "lab"})
    assert r.returncode == 0, r.stdout[-4000:]
    lab = got["gateway_lab_hosts"]
    assert lab["tlshost"]["tls"] is True
    assert lab["plainhost"]["tls"] is False
    assert lab["halfhost"]["tls"] is False
    assert "tls" not in lab["bare"]
    cfg = yaml.safe_load(got["gateway_config"])
    bases = {m["litellm_params"].get("api_base") for m in cfg["model_list"]}
    assert any(str(b).startswith("https://10.9.0.11:4443") for b in bases), bases
    assert any(str(b).startswith("http://10.9.0.12:") for b in bases), bases
    assert not any(str(b).startswith("https://10.9.0.12") for b in bases), bases


def _host(tmp: Path, **extra: Any) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    return _render(tmp, {"h": {"inference_stack_engines": ["vllm", "llamacpp"]}}, "h", extra)


def test_the_token_reaches_the_gateway_only_with_the_fallback(tmp_path: Path) -> None:
    r, got = _host(tmp_path, vault_hf_token="hf_secret_tok")
    assert r.returncode == 0, r.stdout[-4000:]
    assert got["gateway_hf_token"] == ""
    digest_without = got["gateway_files_digest"]
    (tmp_path / "vars.json").unlink()
    r, got = _host(tmp_path, vault_hf_token="hf_secret_tok\n", gateway_hf_fallback_model="org/model")
    assert r.returncode == 0, r.stdout[-4000:]
    assert got["gateway_hf_token"] == "hf_secret_tok"
    assert got["gateway_files_digest"] != digest_without
    # the gateway's own token file: an engine host's hf_token stays hf_secret's
    assert got["gateway_env_vars"]["HF_TOKEN_FILE"].endswith("/gateway_hf_token")
    assert "hf_secret_tok" not in r.stdout


@pytest.mark.parametrize("token", ["", "  \n", None])
def test_a_fallback_without_a_token_stops_naming_both(tmp_path: Path, token: str | None) -> None:
    extra: dict[str, Any] = {"gateway_hf_fallback_model": "org/model"}
    if token is not None:
        extra["vault_hf_token"] = token
    r, got = _host(tmp_path, **extra)
    assert r.returncode != 0 and not got
    assert "vault_hf_token" in r.stdout and "gateway_hf_fallback_model" in r.stdout, r.stdout[-3000:]


def test_engine_keys_are_written_as_hf_secret_writes_them(tmp_path: Path) -> None:
    r, got = _host(tmp_path, vault_vllm_api_key="sk-vllm-abc\n", vault_llamacpp_api_key=" \n")
    assert r.returncode == 0, r.stdout[-4000:]
    assert got["gateway_key_values"] == {"vllm": "sk-vllm-abc", "llamacpp": ""}
    digest = got["gateway_files_digest"]
    (tmp_path / "vars.json").unlink()
    r, got = _host(tmp_path, vault_vllm_api_key="sk-vllm-abc", vault_llamacpp_api_key="")
    assert r.returncode == 0, r.stdout[-4000:]
    assert got["gateway_files_digest"] == digest  # the same files, the same digest: nothing recreated


def test_compose_v1_gets_the_settings_of_gateway_env(tmp_path: Path) -> None:
    r, got = _host(tmp_path, proxy_http="http://proxy.lab:3128", proxy_no_proxy="lab.internal")
    assert r.returncode == 0, r.stdout[-4000:]
    env = got["gateway_env_vars"]
    assert env["COMPOSE_PROFILES"] == "gateway"
    assert env["HTTP_PROXY"] == "http://proxy.lab:3128"
    assert "lab.internal" in env["NO_PROXY"].split(",")
    assert env["GATEWAY_MASTER_KEY_FILE"].endswith("/gateway_master_key")
    assert all(not k.startswith("#") and "\n" not in v for k, v in env.items())
