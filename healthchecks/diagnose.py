"""Why is a local engine unhealthy? Container state, restart count and a named cause from its recent logs.

``match_cause`` is pure (log text -> cause): the engine's own signatures (``engines/<name>.py``) first, then
the causes every GPU container shares, listed here. ``for_endpoint`` finds the container that publishes a
port through the Docker host (:mod:`.dockerhost`), and reads the log of the compose service that checks the
engine's model before it starts (``stack.yml`` ``model_check``) too: an engine whose model the Hub refused never
started and has no log of its own. Neither decides exit codes.
"""

from __future__ import annotations

import re
from typing import Any

from . import dockerhost, engines, stack
from .verdicts import Signature as Cause

# Causes shared by every engine in a GPU container (the engines' own are in their modules)
CAUSES: tuple[Cause, ...] = (
    Cause("gated or unauthorized model",
          re.compile(r"gated repo|Cannot access gated repo|is restricted|401 Client Error|403 Client Error|"
                     r"Invalid (?:credentials|user token)|Unauthorized for url|GatedRepoError", re.I),
          "accept the model's licence on the Hub and put a read token in the HF token secret file "
          "(Ansible: vault_hf_token)"),
    Cause("CUDA out of memory",
          re.compile(r"CUDA out of memory|torch\.OutOfMemoryError|cudaErrorMemoryAllocation|"
                     r"No available memory for the cache blocks|CUBLAS_STATUS_ALLOC_FAILED", re.I),
          "lower VLLM_GPU_MEMORY_UTILIZATION or VLLM_MAX_MODEL_LEN, free the GPU, or serve a smaller model"),
    Cause("NVIDIA driver too old for the image",
          re.compile(r"CUDA driver version is insufficient|driver on your system is too old|"
                     r"forward compatibility was attempted on non supported HW|cuda>=\d+\.\d+.*unsatisfied|"
                     r"unsatisfied condition: cuda", re.I),
          "upgrade the NVIDIA driver (nvidia_driver role) or pin an image built for the installed CUDA"),
    Cause("GPU lost (NVML unknown error)",
          re.compile(r"Failed to initialize NVML: Unknown Error|NVML_ERROR|nvmlInit.*failed", re.I),
          "restart the container; avoid `systemctl daemon-reload` while GPU containers run"),
    Cause("no GPU runtime",
          re.compile(r"could not select device driver .* with capabilities: \[\[gpu\]\]", re.I),
          "install the NVIDIA Container Toolkit, run `nvidia-ctk runtime configure` and restart Docker"),
    Cause("address already in use",
          re.compile(r"address already in use|Errno 98|bind\(\) failed|couldn't bind", re.I),
          "another process holds the port: stop it or change the port in compose/.env"),
    Cause("model not found",
          re.compile(r"Repository Not Found|model ['\"]?[^ ]+['\"]? not found|not a valid model identifier|"
                     r"does not appear to have a file named config\.json|failed to load model|"
                     r"No such file or directory.*(?:gguf|safetensors|config\.json)|"
                     r"HF_HUB_OFFLINE.*(?:cannot|couldn't)|LocalEntryNotFoundError", re.I),
          "check the model name or local path in compose/.env; offline hosts need it in the model cache"),
)


def match_cause(logs: str, engine: str | None = None) -> Cause | None:
    """The first known cause whose signature appears in the logs (latest lines weigh most). With ``engine``,
    that engine's signatures are tried before the shared ones; without it, every engine's are."""
    if engine in engines.ENGINES:
        own = engines.ENGINES[engine].signatures
    else:
        own = tuple(c for e in engines.ENGINES.values() for c in e.signatures)
    causes = (*own, *CAUSES)
    lines = logs.splitlines()[::-1]
    for line in lines:
        for cause in causes:
            if cause.pattern.search(line):
                return cause
    return None


def for_endpoint(port: int, engine: str | None = None, tail: int = 200) -> dict[str, Any] | None:
    """State, restarts and a named cause for the local container publishing ``port``; None if none is."""
    from docker.errors import DockerException

    client = dockerhost.client(timeout=10)
    if client is None:
        return None
    try:
        container = dockerhost.container_for_port(client, port)
        if container is None:
            return None
        state = container.attrs.get("State") or {}
        engine = engine or (container.labels or {}).get("io.gpu-inference-kit.engine")
        logs = _model_check_logs(client, container, engine, tail) + container.logs(tail=tail).decode(errors="replace")
    except DockerException:
        return None
    cause = match_cause(logs, engine)
    health = (state.get("Health") or {}).get("Status")
    return {
        "container": container.name,
        "state": state.get("Status"),
        "health": health,
        "exit_code": state.get("ExitCode"),
        "restart_count": container.attrs.get("RestartCount", 0),
        "oom_killed": state.get("OOMKilled", False),
        "cause": cause.name if cause else None,
        "fix": cause.fix if cause else None,
    }


def _model_check_logs(client: Any, container: Any, engine: str | None, tail: int) -> str:
    """The log of the engine's model check (``stack.yml`` engines.<name>.model_check) in the engine container's
    compose project, older than the engine's own lines; "" when there is none."""
    entry = stack.load().engines.get(engine or "")
    project = (container.labels or {}).get("com.docker.compose.project")
    if entry is None or not entry.model_check or not project:
        return ""
    checks = client.containers.list(all=True, filters={"label": [f"com.docker.compose.project={project}",
                                                                 f"com.docker.compose.service={entry.model_check}"]})
    return "".join(c.logs(tail=tail).decode(errors="replace") + "\n" for c in checks)
