"""Key rotation that survives an interrupted run (issue 21): compose compares a service's definition, not the
contents of the files it mounts, so each service that reads secret files carries io.gpu-inference-kit.files-digest
(compose.yaml), whose variable the roles write into .env (inference_stack) and gateway.env (gateway). A new key
changes the digest of exactly the services that mount it, and compose recreates them, on this run or any later one:
the label on the container, not this run's `changed`, remembers which keys it was made with.

The roles' own Jinja (roles/inference_stack/vars/main.yml inference_stack_files_digests, roles/gateway/vars/main.yml
gateway_files_digest, templates/env.j2) is rendered by a real local ansible-playbook run and compared with the
formula below (the specification the pyinfra deploy mirrors):

    digest = sha256(salt + " " + " ".join(name + ":" + sha256(content) for name in sorted(files)))

The end-to-end proof (an interrupted run, then the old key 401 and the new 200; --check truthful and safe) is
tests/e2e/test_exposure_deploy.py."""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

pytestmark = pytest.mark.unit
ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
COMPOSE = yaml.safe_load((ROOT / "compose" / "compose.yaml").read_text())
LABEL = "io.gpu-inference-kit.files-digest"
SALT = "5a1t" * 16
BASE = {"vault_hf_token": "hf_old", "vault_vllm_api_key": "sk-vllm-old", "vault_llamacpp_api_key": "sk-llama-old"}


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def reference(salt: str, files: dict[str, str]) -> str:
    """The digest as specified (pyinfra mirrors this)."""
    return sha(salt + " " + " ".join(f"{name}:{sha(files[name])}" for name in sorted(files)))


def mounted(service: str) -> list[str]:
    return [s["source"] if isinstance(s, dict) else s for s in COMPOSE["services"][service].get("secrets") or []]


# (case, vault values over BASE, salt)
CASES: list[tuple[str, dict[str, Any], str]] = [
    ("base", {}, SALT),
    ("hf_token", {"vault_hf_token": "hf_new"}, SALT),
    ("vllm_key", {"vault_vllm_api_key": "sk-vllm-new"}, SALT),
    ("llama_key", {"vault_llamacpp_api_key": "sk-llama-new"}, SALT),
    # a blank llama.cpp key: .env names /dev/null (no key), the digest is of an empty file
    ("llama_blank", {"vault_llamacpp_api_key": "  "}, SALT),
    ("other_salt", {}, "0" * 64),
    # whitespace around a key is no part of it (hf_secret writes the file | gik_key_text): the same digests as base,
    # or the "secret files hold the inventory's keys" check of a real run would fail on a padded vault value
    ("padded", {"vault_vllm_api_key": "  sk-vllm-old\n", "vault_llamacpp_api_key": "\tsk-llama-old \r\n"}, SALT),
    # a llama.cpp key file of comments only is no key (llama-server skips "#" lines): .env names /dev/null
    ("llama_comment", {"vault_llamacpp_api_key": "# the key goes here\n"}, SALT),
]


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    tmp = tmp_path_factory.mktemp("rotation")
    tasks: list[dict[str, Any]] = []
    for case, vault, salt in CASES:
        v = {**BASE, **vault, "inference_stack_files_salt": salt, "gateway_master_key": "sk-master",
             "gateway_config": "model_list: []\n", "inference_stack_engines": ["vllm", "llamacpp"],
             # the gateway holds the HF token only where it falls back to Hugging Face (roles/gateway af69025)
             "gateway_hf_fallback_model": "org/m"}
        tasks.append({"name": case, "ansible.builtin.copy": {
            "content": "{{ {'stack': inference_stack_files_digests, 'gateway': gateway_files_digest,"
                       " 'gateway_var': gateway_files_digest_var} | to_json }}",
            "dest": str(tmp / f"{case}.json"), "mode": "0644"}, "vars": v})
        tasks.append({"name": case + " env", "ansible.builtin.template": {
            "src": str(ROOT / "roles" / "inference_stack" / "templates" / "env.j2"),
            "dest": str(tmp / f"{case}.env"), "mode": "0644"}, "vars": v})
    play = [{"hosts": "localhost", "gather_facts": False, "connection": "local",
             "vars_files": [str(ROOT / "roles" / "inference_stack" / "defaults" / "main.yml"),
                            str(ROOT / "roles" / "inference_stack" / "vars" / "main.yml"),
                            str(ROOT / "roles" / "gateway" / "defaults" / "main.yml"),
                            str(ROOT / "roles" / "gateway" / "vars" / "main.yml")],
             "tasks": tasks}]
    (tmp / "play.yml").write_text(yaml.safe_dump(play, sort_keys=False))
    r = subprocess.run([str(BIN / "ansible-playbook"), "-i", "localhost,", str(tmp / "play.yml"),
                        "-e", f"inference_stack_kit_root={ROOT}", "-e", f"gateway_kit_root={ROOT}",
                        "-e", f"ansible_python_interpreter={sys.executable}"],
                       capture_output=True, text=True, timeout=300, env={**os.environ, "ANSIBLE_FORCE_COLOR": "0",
                            "ANSIBLE_FILTER_PLUGINS": os.pathsep.join(
                                str(ROOT / "roles" / r / "filter_plugins") for r in ("gateway", "preflight"))})
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]
    out = {}
    for case, *_ in CASES:
        out[case] = json.loads((tmp / f"{case}.json").read_text())
        out[case]["env"] = dict(ln.split("=", 1) for ln in (tmp / f"{case}.env").read_text().splitlines()
                                if "=" in ln and not ln.startswith("#"))
    return out


def _var(service: str) -> str:
    m = re.fullmatch(r"\$\{([A-Z0-9_]+):-\}", COMPOSE["services"][service]["labels"][LABEL])
    assert m, COMPOSE["services"][service]["labels"][LABEL]
    return m.group(1)


def test_every_service_reading_secret_files_carries_the_digest_label() -> None:
    """A service that mounts a secret without the label would keep its old key after a rotation."""
    for name, svc in COMPOSE["services"].items():
        if svc.get("secrets"):
            assert LABEL in (svc.get("labels") or {}), name
            assert _var(name) == name.upper().replace("-", "_") + "_FILES_DIGEST"
    overlays = [yaml.safe_load(p.read_text()) for p in sorted((ROOT / "compose").glob("compose.*.yaml"))]
    assert not any(s.get("secrets") for o in overlays for s in (o.get("services") or {}).values()), \
        "an overlay mounts a secret: the roles read the services' secrets from compose.yaml alone"


def test_the_stack_digests_follow_the_formula(rendered: dict[str, dict[str, Any]]) -> None:
    contents = {"hf_token": "hf_old", "vllm_api_key": "sk-vllm-old", "llamacpp_api_key": "sk-llama-old"}
    stack = rendered["base"]["stack"]
    # every service mounting only hf_secret's files (not the gateway: the gateway role writes its own)
    assert set(stack) == {"VLLM_FILES_DIGEST", "VLLM_MODEL_CHECK_FILES_DIGEST", "LLAMACPP_FILES_DIGEST",
                          "SGLANG_FILES_DIGEST"}, stack
    for service in ("vllm", "vllm-model-check", "llamacpp", "sglang"):
        assert stack[_var(service)] == reference(SALT, {m: contents[m] for m in mounted(service)}), service
    # .env has them (and the gateway's variable only gateway.env has)
    env = rendered["base"]["env"]
    assert {k: v for k, v in env.items() if k.endswith("_FILES_DIGEST")} == stack
    assert rendered["llama_blank"]["env"]["LLAMACPP_FILES_DIGEST"] == reference(SALT, {"llamacpp_api_key": ""})
    assert "LLAMACPP_API_KEY_FILE" not in rendered["llama_blank"]["env"]
    assert rendered["llama_comment"]["env"]["LLAMACPP_FILES_DIGEST"] == reference(SALT, {"llamacpp_api_key": ""})
    assert "LLAMACPP_API_KEY_FILE" not in rendered["llama_comment"]["env"]
    assert "LLAMACPP_API_KEY_FILE" in env


def test_whitespace_around_a_key_changes_no_digest(rendered: dict[str, dict[str, Any]]) -> None:
    assert rendered["padded"]["stack"] == rendered["base"]["stack"]


@pytest.mark.parametrize(("case", "changed"), [
    ("hf_token", {"VLLM_FILES_DIGEST", "VLLM_MODEL_CHECK_FILES_DIGEST", "SGLANG_FILES_DIGEST"}),
    ("vllm_key", {"VLLM_FILES_DIGEST"}),
    ("llama_key", {"LLAMACPP_FILES_DIGEST"}),
    ("other_salt", {"VLLM_FILES_DIGEST", "VLLM_MODEL_CHECK_FILES_DIGEST", "LLAMACPP_FILES_DIGEST",
                    "SGLANG_FILES_DIGEST"}),
])
def test_a_new_key_changes_exactly_the_digests_of_the_services_mounting_it(
        rendered: dict[str, dict[str, Any]], case: str, changed: set[str]) -> None:
    base, new = rendered["base"]["stack"], rendered[case]["stack"]
    assert {k for k in base if base[k] != new[k]} == changed
    # the gateway sends every engine's key and the token: any of them recreates it; the salt too
    assert rendered[case]["gateway"] != rendered["base"]["gateway"]


def test_the_gateway_digest_follows_the_formula(rendered: dict[str, dict[str, Any]]) -> None:
    files = {m: "" for m in mounted("gateway")}
    files.update({"gateway_master_key": "sk-master", "hf_token": "hf_old", "vllm_api_key": "sk-vllm-old",
                  "llamacpp_api_key": "sk-llama-old", "gateway_config": "model_list: []\n"})
    assert rendered["base"]["gateway_var"] == _var("gateway") == "GATEWAY_FILES_DIGEST"
    assert rendered["base"]["gateway"] == reference(SALT, files)


def test_no_digest_gives_away_a_short_key(rendered: dict[str, dict[str, Any]]) -> None:
    """Without the host's salt a digest is no dictionary's hit: neither an unsalted hash of the key nor of its
    line is what .env shows, and the keys themselves are in no rendered line."""
    env = rendered["base"]["env"]
    text = json.dumps(rendered["base"])
    for key in BASE.values():
        assert key not in text
        assert sha(key) not in text and reference("", {"llamacpp_api_key": key}) not in text
    assert env["LLAMACPP_FILES_DIGEST"] != reference("", {"llamacpp_api_key": "sk-llama-old"})
