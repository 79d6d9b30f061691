"""What a deployed host must look like (see conftest.py for how to run it against your lab)."""

from __future__ import annotations

import json
from typing import Any

PORT_KEYS = {"vllm": "inference_stack_vllm_port", "ollama": "inference_stack_ollama_port",
             "llamacpp": "inference_stack_llamacpp_port"}


def _containers(host: Any, cfg: dict[str, Any]) -> dict[str, dict[str, Any]]:
    out = host.check_output("docker ps -a --filter label=com.docker.compose.project=%s --format '{{json .}}'",
                            cfg["inference_stack_project_name"])
    rows = [json.loads(line) for line in out.splitlines() if line.strip()]
    by_service = {}
    for row in rows:
        labels = dict(kv.split("=", 1) for kv in row.get("Labels", "").split(",") if "=" in kv)
        by_service[labels.get("com.docker.compose.service", "")] = row
    return by_service


def test_docker_running_and_enabled(host: Any, cfg: dict[str, Any]) -> None:
    assert host.run("docker info --format '{{.ServerVersion}}'").rc == 0, "docker daemon not reachable"
    if cfg["docker_manage_service"]:
        svc = host.service("docker")
        assert svc.is_running and svc.is_enabled


def test_nvidia_runtime_configured(host: Any, cfg: dict[str, Any]) -> None:
    runtimes = host.check_output("docker info --format '{{json .Runtimes}}'")
    if cfg["inference_stack_gpu"]:
        assert "nvidia" in json.loads(runtimes), "NVIDIA runtime missing from Docker"


def test_engines_running_and_healthy(host: Any, cfg: dict[str, Any]) -> None:
    containers = _containers(host, cfg)
    for engine in cfg["inference_stack_engines"]:
        assert engine in containers, f"no {engine} container in project {cfg['inference_stack_project_name']}"
        assert containers[engine]["State"] == "running", containers[engine]["Status"]
        assert "(healthy)" in containers[engine]["Status"], containers[engine]["Status"]


def test_ports_listen_on_configured_address(host: Any, cfg: dict[str, Any]) -> None:
    bind = cfg["inference_stack_bind_address"]
    for engine in cfg["inference_stack_engines"]:
        port = cfg[PORT_KEYS[engine]]
        assert host.socket(f"tcp://{bind}:{port}").is_listening, f"{engine} not listening on {bind}:{port}"


def test_secret_files_mode_and_owner(host: Any, cfg: dict[str, Any]) -> None:
    for name in ("hf_token", "vllm_api_key"):
        f = host.file(f"{cfg['hf_secret_dir']}/{name}")
        assert f.is_file and f.user == "root" and f.group == "root" and f.mode == 0o400, name
    assert host.file(cfg["hf_secret_dir"]).mode == 0o700


def test_token_absent_from_inspect_and_environments(host: Any, cfg: dict[str, Any]) -> None:
    token = host.file(f"{cfg['hf_secret_dir']}/hf_token").content_string.strip()
    if not token:
        return  # nothing to leak
    ids = [c["ID"] for c in _containers(host, cfg).values()]
    assert ids
    for cid in ids:
        assert token not in host.check_output("docker inspect %s", cid), "HF token visible in docker inspect"
        environ = host.run("docker exec %s sh -c 'cat /proc/[0-9]*/environ 2>/dev/null'", cid).stdout
        assert token not in environ, "HF token in a container process environment"


def test_nvidia_smi_inside_gpu_containers(host: Any, cfg: dict[str, Any]) -> None:
    if not cfg["inference_stack_gpu"]:
        return
    for engine, row in _containers(host, cfg).items():
        if engine in cfg["inference_stack_engines"]:
            r = host.run("docker exec %s nvidia-smi -L", row["ID"])
            assert r.rc == 0 and "GPU 0" in r.stdout, f"{engine}: nvidia-smi failed in the container: {r.stderr}"
