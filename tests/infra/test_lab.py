"""What a deployed host must look like, whichever way it was deployed (see conftest.py for how to run it)."""

from __future__ import annotations

import json
from typing import Any


def test_docker_running_and_enabled(host: Any, cfg: dict[str, Any]) -> None:
    r = host.run("docker info --format '{{.ServerVersion}}'")
    assert r.rc == 0, f"docker daemon not reachable: {r.stderr.strip()}"
    if cfg["docker_manage_service"]:
        svc = host.service("docker")
        assert svc.is_running and svc.is_enabled


def test_nvidia_runtime_configured(host: Any, cfg: dict[str, Any]) -> None:
    runtimes = json.loads(host.check_output("docker info --format '{{json .Runtimes}}'"))
    if cfg["gpu"]:
        assert "nvidia" in runtimes, "NVIDIA runtime missing from Docker"


def test_engines_running_and_healthy(cfg: dict[str, Any], containers: dict[str, dict[str, Any]]) -> None:
    for engine in cfg["engines"]:
        assert engine in containers, f"no {engine} container in project {cfg['project']} (settings: {cfg['source']})"
        assert containers[engine]["State"] == "running", f"{engine}: {containers[engine]['Status']}"
        assert "(healthy)" in containers[engine]["Status"], f"{engine}: {containers[engine]['Status']}"


def test_ports_listen_on_configured_address(host: Any, cfg: dict[str, Any]) -> None:
    bind = cfg["bind"]
    for engine in cfg["engines"]:
        port = cfg["ports"][engine]
        assert host.socket(f"tcp://{bind}:{port}").is_listening, f"{engine} not listening on {bind}:{port}"


def test_engine_container_publishes_the_configured_port(cfg: dict[str, Any],
                                                        containers: dict[str, dict[str, Any]]) -> None:
    for engine in cfg["engines"]:
        if engine in containers:
            ports = containers[engine].get("Ports", "")
            assert f":{cfg['ports'][engine]}->" in ports, f"{engine} publishes {ports!r}, not {cfg['ports'][engine]}"


def test_secret_files_mode_and_owner(host: Any, cfg: dict[str, Any]) -> None:
    for path in (cfg["hf_token_file"], cfg["vllm_api_key_file"]):
        f = host.file(path)
        assert f.is_file, f"{path} is missing"
        if cfg["managed"]:
            assert (f.user, f.group, f.mode) == ("root", "root", 0o400), f"{path}: {f.user}:{f.group} {f.mode:o}"
        else:
            assert f.mode & 0o077 == 0, f"{path} is readable by group or others (mode {f.mode:o}; use 0600 or 0400)"
    if cfg["managed"]:
        assert host.file(cfg["secret_dir"]).mode == 0o700


def test_token_absent_from_inspect_and_environments(host: Any, cfg: dict[str, Any],
                                                    containers: dict[str, dict[str, Any]]) -> None:
    f = host.file(cfg["hf_token_file"])
    token = f.content_string.strip() if f.is_file else ""
    if not token:
        return  # nothing to leak (a missing file fails test_secret_files_mode_and_owner)
    ids = [c["ID"] for c in containers.values()]
    assert ids
    for cid in ids:
        assert token not in host.check_output("docker inspect %s", cid), "HF token visible in docker inspect"
        environ = host.run("docker exec %s sh -c 'cat /proc/[0-9]*/environ 2>/dev/null'", cid).stdout
        assert token not in environ, "HF token in a container process environment"


def test_nvidia_smi_inside_gpu_containers(host: Any, cfg: dict[str, Any],
                                          containers: dict[str, dict[str, Any]]) -> None:
    if not cfg["gpu"]:
        return
    for engine, row in containers.items():
        if engine in cfg["engines"]:
            r = host.run("docker exec %s nvidia-smi -L", row["ID"])
            assert r.rc == 0 and "GPU 0" in r.stdout, f"{engine}: nvidia-smi failed in the container: {r.stderr}"
