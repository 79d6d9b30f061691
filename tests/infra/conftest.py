"""testinfra suite for a lab deployed by site.yml. Run against your own hosts:

    pytest tests/infra --hosts=ansible://gpu_hosts --ansible-inventory=inventory/hosts.yml

Settings come from each host's Ansible variables (inventory + group_vars), with the roles' defaults.
"""

from __future__ import annotations

from typing import Any

import pytest

DEFAULTS: dict[str, Any] = {
    "inference_stack_gpu": True,
    "inference_stack_engines": ["vllm", "ollama", "llamacpp"],
    "inference_stack_bind_address": "127.0.0.1",
    "inference_stack_vllm_port": 8000,
    "inference_stack_ollama_port": 11434,
    "inference_stack_llamacpp_port": 8080,
    "inference_stack_dir": "/opt/gpu-inference-kit",
    "inference_stack_project_name": "gik",
    "docker_manage_service": True,
}


@pytest.fixture
def cfg(host: Any) -> dict[str, Any]:
    values = dict(DEFAULTS)
    values.update({k: v for k, v in host.ansible.get_variables().items() if k in DEFAULTS or k == "hf_secret_dir"})
    values.setdefault("hf_secret_dir", f"{values['inference_stack_dir']}/secrets")
    return values
