"""Where the endpoints are: ``ENGINE=URL`` arguments, the compose project, or the Ansible inventory.

No network I/O here. Every problem raises :class:`ConfigError` with a one-line message naming the bad value.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from .engines import CATALOGUE, DEPLOYED, NAMES
from .errors import ConfigError

__all__ = ["ConfigError", "Endpoint", "default_endpoints", "from_compose", "from_inventory", "interpolate",
           "normalise_url", "parse_endpoint", "read_dotenv", "with_defaults"]

LABEL = "io.gpu-inference-kit"  # compose labels: io.gpu-inference-kit.engine / .model / .port / .gpu


@dataclass(frozen=True)
class Endpoint:
    engine: str | None  # None: detect by probing
    url: str
    model: str | None = None
    name: str = ""  # display name: "host/engine" or the compose service
    expect_gpu: bool | None = None  # None: unknown (CPU residency is a warning, not a failure)
    api_key_file: str | None = None
    api_key_env: str | None = None  # name of an environment variable holding the key (when no file)
    meta: dict[str, str] = field(default_factory=dict, compare=False, hash=False)

    @property
    def label(self) -> str:
        return self.name or f"{self.engine or '?'}@{self.host}:{self.port}"

    @property
    def host(self) -> str:
        return urlsplit(self.url).hostname or ""

    @property
    def port(self) -> int:
        parts = urlsplit(self.url)
        return parts.port or (443 if parts.scheme == "https" else 80)


def normalise_url(raw: str) -> str:
    """Validate an http(s) URL and drop a trailing slash and a trailing /v1 (we add API paths ourselves)."""
    url = raw.strip()
    if "://" not in url:
        raise ConfigError(f"endpoint URL {raw!r} has no scheme: write http://HOST:PORT")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise ConfigError(f"endpoint URL {raw!r} is malformed: {exc}") from None
    if parts.scheme not in ("http", "https"):
        raise ConfigError(f"endpoint URL {raw!r}: scheme must be http or https, not {parts.scheme!r}")
    if not parts.hostname:
        raise ConfigError(f"endpoint URL {raw!r} has no host")
    if port == 0:
        raise ConfigError(f"endpoint URL {raw!r}: port 0 is not a port")
    url = url.rstrip("/")
    if url.endswith("/v1"):
        url = url[: -len("/v1")]
    return url


def parse_endpoint(spec: str, model: str | None = None) -> Endpoint:
    """``ENGINE=URL`` or a bare URL (engine detected later by probing)."""
    engine: str | None = None
    url = spec
    head, sep, tail = spec.partition("=")
    if sep and "://" not in head:
        engine, url = head.strip().lower(), tail
        if engine not in CATALOGUE:
            raise ConfigError(f"unknown engine {head!r} in {spec!r}: expected one of {', '.join(NAMES)}")
    return Endpoint(engine=engine, url=normalise_url(url), model=model)


def default_endpoints() -> list[Endpoint]:
    """The kit's workstation defaults: every engine on 127.0.0.1 at its default port."""
    return [Endpoint(engine=e, url=f"http://127.0.0.1:{CATALOGUE[e].default_port}", name=e) for e in DEPLOYED]


# -- compose --------------------------------------------------------------------------------------------
_PLAIN = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_BRACED = re.compile(r"^(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?+])(?P<arg>.*))?$", re.S)


def read_dotenv(path: Path) -> dict[str, str]:
    """Compose's .env format: KEY=VALUE lines, # comments, optional quotes, optional ``export``."""
    env: dict[str, str] = {}
    if not path.is_file():
        return env
    for n, raw in enumerate(path.read_text().splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        line = line.removeprefix("export ").strip()
        key, sep, value = line.partition("=")
        key = key.strip()
        if not sep or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.-]*", key):
            raise ConfigError(f"{path}:{n}: not a KEY=VALUE line: {raw.strip()[:60]!r}")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        elif " #" in value:
            value = value.split(" #", 1)[0].rstrip()
        env[key] = value
    return env


def interpolate(value: str, env: Mapping[str, str], where: str = "") -> str:
    """Compose Specification interpolation: $VAR, ${VAR}, ${VAR:-d}, ${VAR-d}, ${VAR:?e}, ${VAR?e},
    ${VAR:+r}, ${VAR+r}, and $$ for a literal dollar. Defaults may nest variables (balanced braces)."""
    out: list[str] = []
    i, n = 0, len(value)
    while i < n:
        ch = value[i]
        if ch != "$" or i + 1 >= n:
            out.append(ch)
            i += 1
            continue
        nxt = value[i + 1]
        if nxt == "$":
            out.append("$")
            i += 2
        elif nxt == "{":
            depth, j = 1, i + 2
            while j < n and depth:
                depth += {"{": 1, "}": -1}.get(value[j], 0)
                j += 1
            if depth:
                raise ConfigError(f"{where}: unclosed interpolation in {value!r}")
            out.append(_braced(value[i + 2 : j - 1], env, where))
            i = j
        else:
            m = _PLAIN.match(value, i + 1)
            if m:
                out.append(env.get(m.group(0), ""))
                i = m.end()
            else:
                out.append("$")
                i += 1
    return "".join(out)


def _braced(expr: str, env: Mapping[str, str], where: str) -> str:
    b = _BRACED.match(expr)
    if not b:
        raise ConfigError(f"{where}: invalid interpolation ${{{expr}}}")
    name, op, arg = b.group("name"), b.group("op"), b.group("arg") or ""
    val = env.get(name)
    unset_or_empty = not val
    if op is None:
        return val or ""
    if op in (":-", "-"):
        use_default = unset_or_empty if op == ":-" else val is None
        return interpolate(arg, env, where) if use_default else (val or "")
    if op in (":?", "?"):
        missing = unset_or_empty if op == ":?" else val is None
        if missing:
            raise ConfigError(f"required variable {name} is not set: {arg or 'set it in compose/.env'}")
        return val or ""
    present = not unset_or_empty if op == ":+" else val is not None  # :+ / +
    return interpolate(arg, env, where) if present else ""


def _interp_tree(node: Any, env: Mapping[str, str], where: str) -> Any:
    if isinstance(node, str):
        return interpolate(node, env, where)
    if isinstance(node, list):
        return [_interp_tree(v, env, where) for v in node]
    if isinstance(node, dict):
        return {k: _interp_tree(v, env, where) for k, v in node.items()}
    return node


def _merge(base: Any, over: Any) -> Any:
    if isinstance(base, dict) and isinstance(over, dict):
        out = dict(base)
        for k, v in over.items():
            out[k] = _merge(base.get(k), v) if k in base else v
        return out
    return over


def _labels(svc: Mapping[str, Any]) -> dict[str, str]:
    labels = svc.get("labels") or {}
    if isinstance(labels, list):
        labels = dict(str(item).partition("=")[::2] for item in labels)
    return {str(k): str(v) for k, v in labels.items()}


def _published(ports: list[Any], target: int) -> tuple[str, int] | None:
    """(host_ip, published) for the container port ``target`` from short or long port syntax."""
    for p in ports or []:
        if isinstance(p, dict):
            if int(p.get("target", 0)) == target and p.get("published"):
                return str(p.get("host_ip") or "0.0.0.0"), int(str(p["published"]).split("-")[0])
            continue
        text = str(p).split("/")[0]
        parts = text.rsplit(":", 2)
        if len(parts) == 3:
            ip, pub, tgt = parts
        elif len(parts) == 2:
            ip, (pub, tgt) = "0.0.0.0", parts
        else:
            continue
        if tgt.isdigit() and int(tgt) == target and pub:
            return ip.strip("[]") or "0.0.0.0", int(pub.split("-")[0])
    return None


def project_name(project_dir: Path, env: Mapping[str, str]) -> str:
    """COMPOSE_PROJECT_NAME, else the directory name normalised as compose does."""
    raw = env.get("COMPOSE_PROJECT_NAME") or project_dir.resolve().name
    return re.sub(r"[^a-z0-9_-]", "", raw.lower())


def compose_files(path: Path, env: Mapping[str, str]) -> list[Path]:
    """The file itself, or, for a directory, COMPOSE_FILE from its .env (else compose.yaml)."""
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise ConfigError(f"compose file {path} does not exist")
    names = env.get("COMPOSE_FILE")
    if names:
        sep = env.get("COMPOSE_PATH_SEPARATOR", os.pathsep)
        return [path / n for n in names.split(sep) if n]
    for n in ("compose.yaml", "compose.yml", "docker-compose.yml", "docker-compose.yaml"):
        if (path / n).is_file():
            return [path / n]
    raise ConfigError(f"no compose file in {path}")


def from_compose(path: str | Path, environ: Mapping[str, str] | None = None) -> list[Endpoint]:
    """Endpoints from a compose project: services labelled ``io.gpu-inference-kit.engine`` and their
    published ports, with ``.env`` interpolation exactly as compose does it (process env wins)."""
    p = Path(path)
    project_dir = p if p.is_dir() else p.parent
    env = {**read_dotenv(project_dir / ".env"), **(environ if environ is not None else os.environ)}
    doc: dict[str, Any] = {}
    for f in compose_files(p, env):
        if not f.is_file():
            raise ConfigError(f"compose file {f} does not exist")
        try:
            loaded = yaml.safe_load(f.read_text())
        except yaml.YAMLError as exc:
            raise ConfigError(f"{f} is not valid YAML: {str(exc).splitlines()[0]}") from None
        if not isinstance(loaded, dict):
            raise ConfigError(f"{f} is not a compose document (top level must be a mapping)")
        doc = _merge(doc, loaded)
    services = doc.get("services") or {}
    profiles = {x.strip() for x in env.get("COMPOSE_PROFILES", "").split(",") if x.strip()}
    project = project_name(project_dir, env)
    found: list[Endpoint] = []
    for name, raw in services.items():
        labels = _labels(raw or {})
        engine = labels.get(f"{LABEL}.engine")
        if not engine:
            continue
        if (raw or {}).get("profiles") and not profiles.intersection(raw["profiles"]):
            continue  # an inactive profile: compose would not start it
        svc = _interp_tree(raw, env, f"service {name}")
        labels = _labels(svc)
        port = int(labels.get(f"{LABEL}.port", (CATALOGUE[engine].default_port if engine in CATALOGUE else None) or 80))
        pub = _published(svc.get("ports") or [], port)
        if pub is None:
            continue  # not published: unreachable from the host
        ip, published = pub
        host = "127.0.0.1" if ip in ("0.0.0.0", "::", "") else ip
        gpu = labels.get(f"{LABEL}.gpu", "").lower()
        found.append(
            Endpoint(
                engine=engine,
                url=f"http://{'[' + host + ']' if ':' in host else host}:{published}",
                model=labels.get(f"{LABEL}.model") or None,
                name=name,
                expect_gpu=True if gpu == "true" else False if gpu == "false" else None,
                meta={"compose_service": name, "compose_project": project},
            )
        )
    if not found:
        raise ConfigError(f"no published services labelled {LABEL}.engine in {path}")
    return found


# -- Ansible inventory -------------------------------------------------------------------------------
INV_ENGINES = "inference_stack_engines"


def _inventory_hostvars(path: Path) -> dict[str, dict[str, Any]]:
    """hostvars of every host, through ``ansible-inventory --list`` (group_vars, host_vars and all)."""
    beside = Path(sys.executable).parent / "ansible-inventory"  # same venv as the kit, even if not on PATH
    exe = str(beside) if beside.is_file() else shutil.which("ansible-inventory")
    if exe is None:
        raise ConfigError("--inventory needs ansible-inventory on PATH (pip install 'gpu-inference-kit[ansible]')")
    proc = subprocess.run([exe, "-i", str(path), "--list"], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "ANSIBLE_NOCOLOR": "1"})
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise ConfigError(f"ansible-inventory could not read {path}: {last}")
    data = json.loads(proc.stdout)
    return dict(data.get("_meta", {}).get("hostvars", {}))


def from_inventory(path: str | Path, group: str | None = None, host: str | None = None) -> list[Endpoint]:
    """Hosts x enabled engines x ports from an Ansible inventory (roles' defaults fill the gaps)."""
    p = Path(path)
    if not p.exists():
        raise ConfigError(f"inventory {p} does not exist")
    hostvars = _inventory_hostvars(p)
    found: list[Endpoint] = []
    for name, hv in sorted(hostvars.items()):
        if group and group not in hv.get("group_names", []):
            continue
        if host and host != name:
            continue
        engines = hv.get(INV_ENGINES, list(DEPLOYED))
        if not isinstance(engines, list):
            raise ConfigError(f"{name}: {INV_ENGINES} must be a list, not {engines!r}")
        address = hv.get("healthcheck_address") or hv.get("ansible_host") or name
        if hv.get("ansible_connection") == "local" and "ansible_host" not in hv:
            address = "127.0.0.1"
        for engine in engines:
            spec = CATALOGUE.get(engine)
            if spec is None or not spec.deployed or spec.ansible_port is None:
                raise ConfigError(f"{name}: unknown engine {engine!r} in {INV_ENGINES}")
            port: Any = hv.get(spec.ansible_port, spec.default_port)
            try:
                port = int(port)
            except (TypeError, ValueError):
                raise ConfigError(f"{name}: {spec.ansible_port} must be a port number, not {port!r}") from None
            gpu = hv.get("inference_stack_gpu")
            found.append(Endpoint(
                engine=engine,
                url=f"http://{address}:{port}",
                model=hv.get(spec.ansible_model) if spec.ansible_model else None,
                name=f"{name}/{engine}",
                expect_gpu=None if gpu is None else bool(gpu),
                meta={"host": name},
            ))
    if not found:
        where = (f" group {group}" if group else "") + (f" host {host}" if host else "")
        raise ConfigError(f"no hosts with engines in inventory {p}{where}")
    return found


def with_defaults(eps: list[Endpoint], model: str | None, api_key_file: str | None) -> list[Endpoint]:
    """Apply --model / --api-key-file to every endpoint (explicit flags win over discovered values)."""
    return [replace(e, model=model or e.model, api_key_file=api_key_file or e.api_key_file) for e in eps]
