"""Which engines inference_stack recreates after a secret file changed (issue 21: a new engine key or HF token
must reach the engine; compose compares no file's contents), decided by the role's own variable
(roles/inference_stack/vars/main.yml inference_stack_recreate) over the real `docker compose config` of the kit's
compose/ (its top-level secrets: and each service's secrets:), in one local ansible-playbook run. The end-to-end
proof (a new llama.cpp key: the old one 401, the new one 200, a third run changed=0) is
tests/e2e/test_exposure_deploy.py."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

pytestmark = pytest.mark.unit
ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
SECRETS = "/opt/gik-test/secrets"

# (case, engines, files hf_secret changed, the bring-up's own result (v2 actions / v1 stderr), services recreated)
CASES: list[tuple[str, list[str], list[str], dict[str, Any], list[str]]] = [
    ("nothing_changed", ["vllm", "llamacpp"], [], {}, []),
    ("llama_key", ["vllm", "llamacpp"], ["llamacpp_api_key"], {}, ["llamacpp"]),
    ("vllm_key", ["vllm", "llamacpp"], ["vllm_api_key"], {}, ["vllm"]),
    # the token: vLLM mounts it, llama.cpp does not; vLLM's one-shot model check (a dependency compose starts, not
    # a service the role brings up) is left alone (--no-deps)
    ("hf_token", ["vllm", "llamacpp"], ["hf_token"], {}, ["vllm"]),
    ("all", ["vllm", "llamacpp"], ["hf_token", "vllm_api_key", "llamacpp_api_key"], {}, ["vllm", "llamacpp"]),
    # a service not deployed on this host is not recreated
    ("llama_key_vllm_only", ["vllm"], ["llamacpp_api_key"], {}, []),
    # the bring-up just created (first deploy) or recreated it: not a second time
    ("llama_key_just_created_v2", ["vllm", "llamacpp"], ["llamacpp_api_key", "vllm_api_key"],
     {"inference_stack_up": {"actions": [{"what": "container", "id": "gik-llamacpp-1", "status": "Creating"},
                                         {"what": "container", "id": "gik-vllm-model-check-1", "status": "Recreate"},
                                         {"what": "network", "id": "gik_default", "status": "Creating"}]}},
     ["vllm"]),
    ("llama_key_just_recreated_v1", ["vllm", "llamacpp"], ["llamacpp_api_key", "vllm_api_key"],
     {"inference_stack_v1_up": {"stderr": "Recreating compose_llamacpp_1 ... \nStarting compose_vllm_1 ... done\n"}},
     ["vllm"]),
]


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[str]]:
    if not shutil.which("docker"):
        pytest.skip("docker (compose v2) is not installed")
    tmp = tmp_path_factory.mktemp("recreate")
    env = {**os.environ, "HF_TOKEN_FILE": f"{SECRETS}/hf_token", "VLLM_API_KEY_FILE": f"{SECRETS}/vllm_api_key",
           "LLAMACPP_API_KEY_FILE": f"{SECRETS}/llamacpp_api_key", "COMPOSE_PROFILES": ""}
    cfg = subprocess.run(["docker", "compose", "--project-directory", str(ROOT / "compose"), "-f",
                          str(ROOT / "compose" / "compose.yaml"), "config"], capture_output=True, text=True,
                         env=env, timeout=120)
    assert cfg.returncode == 0, cfg.stderr
    (tmp / "config.yml").write_text(cfg.stdout)
    tasks = [{"name": case, "ansible.builtin.copy": {
                 "content": "{{ inference_stack_recreate | to_json }}", "dest": str(tmp / f"{case}.json"),
                 "mode": "0644"},
              "vars": {"inference_stack_engines": engines,
                       "hf_secret_changed_files": [f"{SECRETS}/{f}" for f in changed], **up}}
             for case, engines, changed, up, _ in CASES]
    play = [{"hosts": "localhost", "gather_facts": False, "connection": "local",
             "vars_files": [str(ROOT / "roles" / "inference_stack" / "vars" / "main.yml")],
             "vars": {"inference_stack_config": {"stdout": "{{ lookup('ansible.builtin.file', '"
                                                           + str(tmp / "config.yml") + "') }}"}},
             "tasks": tasks}]
    (tmp / "play.yml").write_text(yaml.safe_dump(play, sort_keys=False))
    r = subprocess.run([str(BIN / "ansible-playbook"), "-i", "localhost,", str(tmp / "play.yml"),
                        "-e", f"inference_stack_kit_root={ROOT}", "-e", f"ansible_python_interpreter={sys.executable}"],
                       capture_output=True, text=True, timeout=300,
                       env={**os.environ, "ANSIBLE_FORCE_COLOR": "0"})
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]
    return {case: json.loads((tmp / f"{case}.json").read_text()) for case, *_ in CASES}


@pytest.mark.parametrize(("case", "expected"), [(c[0], c[4]) for c in CASES])
def test_exactly_the_services_mounting_a_changed_secret_file_are_recreated(
        results: dict[str, list[str]], case: str, expected: list[str]) -> None:
    assert sorted(results[case]) == sorted(expected)


def test_the_mounts_come_from_compose_not_a_table() -> None:
    """The services' secrets in compose.yaml are what the cases above expect (a change there changes them)."""
    services = yaml.safe_load((ROOT / "compose" / "compose.yaml").read_text())["services"]
    assert set(services["llamacpp"]["secrets"]) == {"llamacpp_api_key"}
    assert {"hf_token", "vllm_api_key"} <= set(services["vllm"]["secrets"])
    assert "hf_token" in services["vllm-model-check"]["secrets"]
