"""The Docker host this process runs on, through the docker SDK: the client, the container that publishes a
port, a container's published ports, the services of a compose project that have a container.

A leaf: imports nothing of the kit. Every function answers None (or nothing) when Docker cannot be reached.
"""

from __future__ import annotations

from typing import Any

LOCAL_HOSTS = {"127.0.0.1", "localhost", "0.0.0.0", "::1", "::"}


def is_local(host: str) -> bool:
    """Whether ``host`` names this machine, whose Docker daemon and processes can be looked at."""
    return host in LOCAL_HOSTS


def client(timeout: int = 10) -> Any | None:
    """A docker SDK client for the local daemon (DOCKER_HOST and friends honoured); None when unreachable."""
    try:
        import docker
        from docker.errors import DockerException
    except ImportError:  # pragma: no cover - docker is a dependency
        return None
    try:
        return docker.from_env(timeout=timeout)
    except DockerException:
        return None


def published_ports(container: Any) -> set[str]:
    """The host ports a container publishes (``HostConfig.PortBindings``), as text."""
    ports = (container.attrs.get("HostConfig") or {}).get("PortBindings") or {}
    return {str(b.get("HostPort")) for bindings in ports.values() for b in bindings or []}


def container_for_port(docker_client: Any, port: int) -> Any | None:
    """The container (running or not) that publishes host ``port``; None if none does."""
    for c in docker_client.containers.list(all=True):
        if str(port) in published_ports(c):
            return c
    return None


def _list_containers(**filters: Any) -> list[Any] | None:
    """The local daemon's containers matching docker's ``filters`` (``all`` lists stopped ones too); None when
    Docker cannot be reached."""
    try:
        from docker.errors import DockerException
    except ImportError:  # pragma: no cover
        return None
    dc = client(timeout=5)
    if dc is None:
        return None
    list_all = bool(filters.pop("all", False))
    try:
        return list(dc.containers.list(all=list_all, filters=filters))
    except DockerException:
        return None


def deployed_services(project: str) -> set[str] | None:
    """Service names with a container in compose project ``project``; None when docker is unreachable."""
    containers = _list_containers(all=True, label=f"com.docker.compose.project={project}")
    if containers is None:
        return None
    return {c.labels.get("com.docker.compose.service", "") for c in containers}


def running_labelled(label: str) -> list[dict[str, str]] | None:
    """The running containers carrying ``{label}.engine`` (the kit's compose services), each as its labels plus
    ``host_ip``/``host_port`` (where the container port named by ``{label}.port`` is published; "" when it is
    not), ``service`` and ``project``. None when Docker cannot be reached."""
    containers = _list_containers(label=f"{label}.engine", status="running")
    if containers is None:
        return None
    found = []
    for c in containers:
        labels = dict(c.labels)
        port = labels.get(f"{label}.port", "")
        bindings = ((c.attrs.get("NetworkSettings") or {}).get("Ports") or {}).get(f"{port}/tcp") or []
        first = bindings[0] if bindings else {}
        found.append({**labels, "host_ip": str(first.get("HostIp") or ""),
                      "host_port": str(first.get("HostPort") or ""),
                      "service": labels.get("com.docker.compose.service", c.name),
                      "project": labels.get("com.docker.compose.project", "")})
    return found
