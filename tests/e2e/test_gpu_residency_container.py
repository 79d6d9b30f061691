"""The container-PID mapping against a real container: `docker top` gives the container's processes as host
PIDs, NSpid maps them to the container's own PID namespace, and the gpu_residency verdict attributes nvidia-smi
compute apps (the double, recorded H100 lines) to the container that publishes the endpoint's port."""

from __future__ import annotations

import os
import secrets
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import free_port, wait_http

from healthchecks.engines import ENGINES
from healthchecks.gpu import residency

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def container() -> Iterator[tuple[str, int, int]]:
    name, port = f"gik-residency-{secrets.token_hex(3)}", free_port()
    subprocess.run(["docker", "run", "-d", "--name", name, "-p", f"127.0.0.1:{port}:8000", "local/debian:bookworm",
                    "python3", "-m", "http.server", "8000"], check=True, capture_output=True, timeout=120)
    try:
        # 180 s: python3's start in a fresh container can take tens of seconds on CI's two loaded cores
        assert wait_http(f"http://127.0.0.1:{port}/", 180), f"container {name} did not answer on port {port}"
        pid = int(subprocess.run(["docker", "inspect", "-f", "{{.State.Pid}}", name], capture_output=True,
                                 text=True, check=True).stdout)
        yield name, port, pid
    finally:
        subprocess.run(["docker", "rm", "-f", name], capture_output=True, timeout=60)


@pytest.fixture(scope="module")
def smi_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from doubles.nvidia_smi_double import install

    d = tmp_path_factory.mktemp("nvsmi")
    install(d)
    return d


def test_container_processes_are_host_pids_with_their_namespace_pids(container: tuple[str, int, int]) -> None:
    name, port, pid = container
    found = residency.engine_processes("127.0.0.1", port)
    assert isinstance(found, residency.EngineProcesses), found
    assert found.source == f"container {name}"
    assert pid in found.pids  # docker top: host PIDs
    assert found.ns_pids.get(1) == pid  # python3 is PID 1 inside the container


def test_verdict_attributes_gpu_memory_to_the_container(container: tuple[str, int, int], smi_dir: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    name, port, pid = container
    monkeypatch.setenv("PATH", f"{smi_dir}:{os.environ['PATH']}")
    monkeypatch.setenv("NVSMI_DOUBLE_PIDS", f"{pid}:20480")  # host nvidia-smi: host PIDs
    verdict = residency.verdict(ENGINES["vllm"].signatures, "127.0.0.1", port, expect_gpu=True)
    assert verdict == ("pass", f"container {name} holds GPU 0: 20480 MiB (nvidia-smi)")
    monkeypatch.setenv("NVSMI_DOUBLE_PIDS", "1:20480")  # PID 1 on the host is not the container's process
    verdict = residency.verdict(ENGINES["vllm"].signatures, "127.0.0.1", port, expect_gpu=True)
    assert verdict is not None and verdict[0] == "fail" and f"container {name} holds no GPU memory" in verdict[1]


def test_nvidia_smi_inside_the_container_reports_namespace_pids(container: tuple[str, int, int], tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """No nvidia-smi on the host: the one in the engine's container runs, listing PIDs of its namespace."""
    from doubles import nvidia_smi_double

    name, port, _ = container
    wrapper = tmp_path / "nvidia-smi"
    wrapper.write_text('#!/bin/sh\nNVSMI_DOUBLE_PIDS=1:4096 exec python3 /opt/nvsmi.py "$@"\n')
    wrapper.chmod(0o755)
    for src, dst in ((Path(nvidia_smi_double.__file__), "/opt/nvsmi.py"), (wrapper, "/usr/local/bin/nvidia-smi")):
        subprocess.run(["docker", "cp", str(src), f"{name}:{dst}"], check=True, capture_output=True, timeout=60)
    monkeypatch.setenv("PATH", ":".join(p for p in os.environ["PATH"].split(":")
                                        if not (Path(p) / "nvidia-smi").exists()))
    verdict = residency.verdict(ENGINES["vllm"].signatures, "127.0.0.1", port, expect_gpu=True)
    assert verdict == ("pass", f"container {name} holds GPU 0: 4096 MiB (nvidia-smi in container {name})")
