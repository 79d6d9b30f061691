"""Where the endpoints are: ``ENGINE=URL`` arguments, the compose project, or the Ansible inventory.

No network I/O here. Every problem raises :class:`ConfigError` with a one-line message naming the bad value.
"""

from __future__ import annotations

import collections
import contextlib
import ipaddress
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
from urllib.parse import urlsplit, urlunsplit

import yaml

from .engines import CATALOGUE, DEPLOYED, NAMES
from .errors import ConfigError
from .numbers import ascii_uint

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
    # per-engine settings (--model ENGINE=NAME, --api-key-file ENGINE=FILE) for an endpoint whose engine is
    # detected later: engine -> {"model": ..., "api_key_file": ...}; applied by :meth:`as_engine`
    per_engine: dict[str, dict[str, str]] = field(default_factory=dict, compare=False, hash=False)

    def as_engine(self, engine: str) -> Endpoint:
        """This endpoint once its engine is known: the engine's own --model / --api-key-file apply, and the
        label names the engine (``vllm@host:port``, not ``?@host:port``)."""
        own = self.per_engine.get(engine, {})
        return replace(self, engine=engine, model=own.get("model", self.model),
                       api_key_file=own.get("api_key_file", self.api_key_file))

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


def _host_problem(host: str) -> str | None:
    """Why ``host`` cannot be connected to (DNS's limits, IDNA), or None."""
    with contextlib.suppress(ValueError):
        ipaddress.ip_address(host)
        return None
    if len(host.rstrip(".")) > 253:
        return "host name longer than 253 characters"
    for label in host.rstrip(".").split("."):
        if not label:
            return f"host name {host!r} has an empty label"
        if len(label) > 63:
            return f"host name label {label[:20]}... is longer than 63 characters"
    try:
        host.encode("idna")
    except UnicodeError as exc:
        return f"host name {host!r} is not a valid (IDNA) name: {exc}"
    return None


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
    if parts.username is not None or parts.password is not None:
        # shown with the secret replaced: the URL is what every report, row and error line prints
        shown = urlunsplit(parts._replace(netloc="***@" + parts.netloc.rpartition("@")[2]))
        raise ConfigError(f"endpoint URL {shown!r} carries user:password, which every report would print: "
                          "use --api-key-file (a Bearer key) instead")
    if not parts.hostname:
        raise ConfigError(f"endpoint URL {raw!r} has no host")
    if parts.query or parts.fragment or url.endswith(("?", "#")):
        raise ConfigError(f"endpoint URL {raw!r}: no ?query or #fragment (the kit appends API paths to the URL)")
    if any(c.isspace() for c in url):
        raise ConfigError(f"endpoint URL {raw!r} contains whitespace")
    if port == 0:
        raise ConfigError(f"endpoint URL {raw!r}: port 0 is not a port")
    host_problem = _host_problem(parts.hostname)
    if host_problem:
        raise ConfigError(f"endpoint URL {raw!r}: {host_problem}")
    url = url.rstrip("/")
    if url.endswith("/v1"):
        url = url[: -len("/v1")]
    return url


def parse_endpoint(spec: str, model: str | None = None) -> Endpoint:
    """``ENGINE=URL``, a bare URL (engine detected later by probing), or ``ENGINE`` alone for an engine with a
    public address of its own (``hf``: the Hugging Face router)."""
    named = CATALOGUE.get(spec.strip().lower())
    if named is not None and named.default_url:
        return Endpoint(engine=named.name, url=normalise_url(named.default_url), model=model)
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


_SPACE = "\t\v\f\r \x85\xa0"  # compose-go's isSpace: blanks, not the newline
_EXPORT = re.compile(r"export[\t\n\f\r ]+")
_ESCAPE = re.compile(r'\\(?:[abcfnrtv$"\\]|0\d{0,3})')
_GO_ESCAPES = {"a": "\a", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v", '"': '"', "\\": "\\"}


def _go_escape(m: re.Match[str]) -> str:
    """One escape of a double-quoted .env value, as compose-go's expandEscapes (Go's UnquoteChar)."""
    text = m.group(0)
    if text == "\\$":
        return "$$"  # a literal dollar for the interpolation that follows
    if text[1] == "0":  # compose-go rewrites \0NNN to \NNN, then Go's UnquoteChar wants exactly 3 octal digits
        digits = text[2:]
        if len(digits) == 3 and all(c in "01234567" for c in digits) and int(digits, 8) <= 255:
            return chr(int(digits, 8))
        return "\\" + digits
    return _GO_ESCAPES[text[1]]


def parse_dotenv(text: str, environ: Mapping[str, str], where: str = ".env") -> dict[str, str]:
    """A .env file exactly as Docker Compose reads it (compose-go's dotenv parser): ``KEY=VALUE`` or
    ``KEY: VALUE``, optional ``export``, ``#`` comments (on unquoted values only after a blank), single
    quotes literal, double quotes with escapes (``\\n``, ``\\t``, ``\\"``, ``\\$``...) and multi-line values,
    ``$VAR`` / ``${VAR:-default}`` interpolation of unquoted and double-quoted values (process environment
    first, then the lines above), a bare ``KEY`` inheriting the process environment, a UTF-8 BOM and CRLF.
    Errors are ConfigError naming ``where`` and the line."""
    src = text.removeprefix("\ufeff").replace("\r\n", "\n")
    out: dict[str, str] = {}
    lookup = collections.ChainMap(dict(environ), out)
    i, n = 0, len(src)

    def line_at(pos: int) -> int:
        return src.count("\n", 0, pos) + 1

    while True:
        # the next statement: skip blank space, newlines and comment lines
        while i < n and (src[i].isspace() or src[i] == "#"):
            if src[i] == "#":
                nl = src.find("\n", i)
                i = n if nl < 0 else nl
            else:
                i += 1
        if i >= n:
            return out
        start = i
        if m := _EXPORT.match(src, i):
            i = m.end()
            while i < n and src[i] in _SPACE:
                i += 1
        key_start, key, inherited, end = i, None, False, n
        j = i
        while j < n:
            ch = src[j]
            if ch in _SPACE:
                j += 1
                continue
            if ch in "=:\n":
                key, inherited, end = src[key_start:j].rstrip(), ch == "\n", j + 1
                break
            if not (ch in "_.-[]" or ch.isalpha() or ch.isnumeric()):
                first = src[key_start:].split("\n", 1)[0]
                raise ConfigError(f"{where}:{line_at(j)}: unexpected character {ch!r} in variable name "
                                  f"{first[:60]!r}")
            j += 1
        if key is None:  # a last line without = (compose ignores it)
            return out
        if " " in key:
            raise ConfigError(f"{where}:{line_at(start)}: key {key[:60]!r} cannot contain a space")
        i = end
        if inherited:
            if key and key in environ:
                out[key] = environ[key]
            continue
        while i < n and src[i] in _SPACE:
            i += 1
        if i < n and src[i] in "'\"":
            quote, chars, escaped, k = src[i], [], False, i + 1
            while k < n:
                ch = src[k]
                if ch != quote:
                    if not escaped and ch == "\\":
                        escaped = True
                    else:
                        if escaped:
                            escaped = False
                            chars.append("\\")
                        chars.append(ch)
                    k += 1
                    continue
                if escaped:  # \" or \' : the quote itself
                    escaped = False
                    chars.append(ch)
                    k += 1
                    continue
                break
            else:
                first = src[i:].split("\n", 1)[0]
                raise ConfigError(f"{where}:{line_at(i)}: unterminated quoted value {first[:60]}")
            value = "".join(chars)
            if quote == '"':
                value = interpolate(_ESCAPE.sub(_go_escape, value), lookup, f"{where}:{line_at(i)}")
            i = k + 1
        else:
            nl = src.find("\n", i)
            raw = src[i:] if nl < 0 else src[i:nl]
            i = n if nl < 0 else nl + 1
            raw = raw.split(" #", 1)[0].rstrip()
            value = interpolate(raw, lookup, f"{where}:{line_at(i - 1)}")
        if key:
            out[key] = value


def read_dotenv(path: Path, environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The project's .env as Compose reads it (see :func:`parse_dotenv`); {} when there is none. Bytes that
    are not UTF-8 become U+FFFD, as in Compose."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return {}
    except IsADirectoryError:
        raise ConfigError(f"{path} is a directory, not a .env file") from None
    except OSError as exc:
        raise ConfigError(f"{path} cannot be read: {exc.strerror or exc}") from None
    return parse_dotenv(data.decode("utf-8", errors="replace"), os.environ if environ is None else environ,
                        str(path))


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


_REPLACED_SEQUENCES = ("command", "entrypoint", "test")  # compose replaces these; other sequences are merged


def _merge(base: Any, over: Any, key: str = "") -> Any:
    """Compose's merge of an override file: mappings merged, sequences appended (without repeats) except
    command/entrypoint/healthcheck test, scalars replaced."""
    if isinstance(base, dict) and isinstance(over, dict):
        out = dict(base)
        for k, v in over.items():
            out[k] = _merge(base.get(k), v, str(k)) if k in base else v
        return out
    if isinstance(base, list) and isinstance(over, list) and key not in _REPLACED_SEQUENCES:
        return base + [v for v in over if v not in base]
    return over


def _labels(svc: Mapping[str, Any]) -> dict[str, str]:
    labels = svc.get("labels") or {}
    if isinstance(labels, list):
        labels = dict(str(item).partition("=")[::2] for item in labels)
    if not isinstance(labels, dict):
        return {}
    return {str(k): "" if v is None else str(v) for k, v in labels.items()}


def _port_number(text: Any, what: str) -> int:
    """A port from compose text (``8000`` or the first of a range ``8000-8010``), else ConfigError naming it."""
    port = ascii_uint(str(text).strip().split("-")[0], 5)
    if port is None or not 1 <= port <= 65535:
        raise ConfigError(f"{what}: {str(text)!r} is not a port number (1-65535)")
    return port


def _published(ports: Any, target: int, raw_ports: Any, service: str) -> tuple[str, int] | None:
    """(host_ip, published) for the container port ``target`` from short or long port syntax. ``raw_ports``
    (before interpolation) names the setting when a value is not a port."""
    if not isinstance(ports, list):
        return None
    raws = raw_ports if isinstance(raw_ports, list) and len(raw_ports) == len(ports) else ports
    for p, raw in zip(ports, raws, strict=True):
        what = f"service {service}: port {raw!r}" if raw != p else f"service {service}: port"
        if isinstance(p, dict):
            if ascii_uint(str(p.get("target"))) == target and p.get("published") not in (None, ""):
                return str(p.get("host_ip") or "0.0.0.0"), _port_number(p["published"], what)
            continue
        text = str(p).split("/")[0]
        parts = text.rsplit(":", 2)
        if len(parts) == 3:
            ip, pub, tgt = parts
        elif len(parts) == 2:
            ip, (pub, tgt) = "0.0.0.0", parts
        else:
            continue
        if ascii_uint(tgt.strip()) == target and pub:
            return ip.strip("[]") or "0.0.0.0", _port_number(pub, what)
    return None


_PROJECT_NAME = re.compile(r"[a-z0-9][a-z0-9_-]*")


def normalise_project_name(raw: str) -> str:
    """Compose's loader.NormalizeProjectName: lower case, keep [a-z0-9_-], no leading ``_``/``-``."""
    return "".join(re.findall(r"[a-z0-9_-]", raw.lower())).lstrip("_-")


def project_name(project_dir: Path, env: Mapping[str, str], declared: Any = None) -> str:
    """The compose project name as Compose settles it: COMPOSE_PROJECT_NAME (process environment, then .env;
    must already be valid), else the compose file's top-level ``name:``, else the project directory's
    name, both normalised."""
    explicit = env.get("COMPOSE_PROJECT_NAME")
    if explicit:
        if not _PROJECT_NAME.fullmatch(explicit):
            raise ConfigError(f"COMPOSE_PROJECT_NAME={explicit!r} is not a valid project name: lowercase letters, "
                              "digits, '-' and '_', starting with a letter or digit")
        return explicit
    for raw in (declared, project_dir.resolve().name):
        if isinstance(raw, str) and normalise_project_name(raw):
            return normalise_project_name(raw)
    raise ConfigError(f"cannot derive a compose project name from {project_dir.resolve()}: set "
                      "COMPOSE_PROJECT_NAME")


# Compose's own discovery, in its order of preference (compose-go cli.DefaultFileNames / DefaultOverrideFileNames)
COMPOSE_FILE_NAMES = ("compose.yaml", "compose.yml", "docker-compose.yml", "docker-compose.yaml")
OVERRIDE_FILE_NAMES = ("compose.override.yml", "compose.override.yaml", "docker-compose.override.yml",
                       "docker-compose.override.yaml")


def compose_files(path: Path, env: Mapping[str, str]) -> list[Path]:
    """The file itself; for a directory, COMPOSE_FILE (process environment or .env), else the first
    compose file name Compose accepts plus the first override file, as Compose picks them."""
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise ConfigError(f"compose file {path} does not exist")
    names = env.get("COMPOSE_FILE")
    if names:
        sep = env.get("COMPOSE_PATH_SEPARATOR") or os.pathsep
        return [path / n for n in names.split(sep) if n]
    main = next((path / n for n in COMPOSE_FILE_NAMES if (path / n).is_file()), None)
    if main is None:
        raise ConfigError(f"no compose file in {path} (looked for {', '.join(COMPOSE_FILE_NAMES)})")
    override = next((path / n for n in OVERRIDE_FILE_NAMES if (path / n).is_file()), None)
    return [main] + ([override] if override else [])


def load_compose(path: str | Path, environ: Mapping[str, str] | None = None
                 ) -> tuple[Path, dict[str, str], dict[str, Any]]:
    """(project directory, settings, merged document) of a compose file or project directory: ``.env`` read
    as Compose reads it, the process environment winning; the document not yet interpolated."""
    p = Path(path)
    project_dir = p if p.is_dir() else p.parent
    environ = os.environ if environ is None else environ
    env = {**read_dotenv(project_dir / ".env", environ), **environ}
    doc: dict[str, Any] = {}
    for f in compose_files(p, env):
        try:
            text = f.read_bytes().decode("utf-8")
        except FileNotFoundError:
            raise ConfigError(f"compose file {f} does not exist") from None
        except UnicodeDecodeError as exc:
            raise ConfigError(f"{f} is not UTF-8 text (byte {exc.start})") from None
        except OSError as exc:
            raise ConfigError(f"compose file {f} cannot be read: {exc.strerror or exc}") from None
        try:
            loaded = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ConfigError(f"{f} is not valid YAML: {str(exc).splitlines()[0]}") from None
        if not isinstance(loaded, dict):
            raise ConfigError(f"{f} is not a compose document (top level must be a mapping)")
        doc = _merge(doc, loaded)
    return project_dir, env, doc


def from_compose(path: str | Path, environ: Mapping[str, str] | None = None) -> list[Endpoint]:
    """Endpoints from a compose project: services labelled ``io.gpu-inference-kit.engine`` and their
    published ports, with ``.env`` interpolation exactly as compose does it (process env wins)."""
    project_dir, env, doc = load_compose(path, environ)
    services = doc.get("services") or {}
    if not isinstance(services, dict):
        raise ConfigError(f"{path}: 'services' must be a mapping of service names")
    profiles = {x.strip() for x in env.get("COMPOSE_PROFILES", "").split(",") if x.strip()}
    name = doc.get("name")
    project = project_name(project_dir, env, interpolate(name, env, "name") if isinstance(name, str) else None)
    found: list[Endpoint] = []
    for svc_name, raw in services.items():
        if raw is None:
            raw = {}
        if not isinstance(raw, dict):
            raise ConfigError(f"{path}: service {svc_name} must be a mapping")
        labels = _labels(raw)
        engine = labels.get(f"{LABEL}.engine")
        if not engine:
            continue
        wanted = raw.get("profiles")
        if wanted and not (isinstance(wanted, list) and profiles.intersection(map(str, wanted))):
            continue  # an inactive profile: compose would not start it
        svc = _interp_tree(raw, env, f"service {svc_name}")
        labels = _labels(svc)
        engine = labels.get(f"{LABEL}.engine", engine)
        if engine not in CATALOGUE:
            raise ConfigError(f"service {svc_name}: label {LABEL}.engine={engine!r} is not an engine the kit "
                              f"knows ({', '.join(NAMES)})")
        port_label = labels.get(f"{LABEL}.port")
        port = (_port_number(port_label, f"service {svc_name}: label {LABEL}.port") if port_label
                else CATALOGUE[engine].default_port or 80)
        pub = _published(svc.get("ports") or [], port, raw.get("ports"), str(svc_name))
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
                name=str(svc_name),
                expect_gpu=True if gpu == "true" else False if gpu == "false" else None,
                meta={"compose_service": str(svc_name), "compose_project": project},
            )
        )
    if not found:
        raise ConfigError(f"no published services labelled {LABEL}.engine in {path}")
    return found


# -- Ansible inventory -------------------------------------------------------------------------------
INV_ENGINES = "inference_stack_engines"


def _inventory_hostvars(path: Path) -> tuple[dict[str, dict[str, Any]], dict[str, set[str]]]:
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
    try:
        data = json.loads(proc.stdout)
        hostvars = data["_meta"]["hostvars"]
    except (ValueError, KeyError, TypeError):
        raise ConfigError(f"ansible-inventory gave no host variables for {path}") from None
    hosts = {str(k): v for k, v in hostvars.items() if isinstance(v, dict)} if isinstance(hostvars, dict) else {}
    return hosts, _groups_of_hosts(data)


def _groups_of_hosts(data: Mapping[str, Any]) -> dict[str, set[str]]:
    """host -> every group it belongs to, children included (``--list`` has no ``group_names`` in hostvars)."""
    def members(group: str, seen: frozenset[str]) -> set[str]:
        node = data.get(group)
        if not isinstance(node, dict) or group in seen:
            return set()
        found = {str(h) for h in node.get("hosts") or []}
        for child in node.get("children") or []:
            found |= members(str(child), seen | {group})
        return found
    groups: dict[str, set[str]] = {}
    for group in data:
        if group != "_meta":
            for host in members(group, frozenset()):
                groups.setdefault(host, set()).add(group)
    return groups


# Ansible's boolean conversion (ansible.module_utils.parsing.convert_bool, what ``| bool`` uses): INI
# inventories hand every value over as a string, so ``inference_stack_gpu=false`` arrives as "false".
_TRUE = frozenset({"y", "yes", "on", "1", "true", "t"})
_FALSE = frozenset({"n", "no", "off", "0", "false", "f"})


def ansible_bool(value: Any, what: str) -> bool:
    """``value`` read as Ansible reads a boolean; anything else is a ConfigError naming ``what``."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        low = value.strip().lower()
        if low in _TRUE:
            return True
        if low in _FALSE:
            return False
    raise ConfigError(f"{what} must be a boolean (true/false, yes/no, on/off, 1/0), not {value!r}")


def from_inventory(path: str | Path, group: str | None = None, host: str | None = None) -> list[Endpoint]:
    """Hosts x enabled engines x ports from an Ansible inventory (roles' defaults fill the gaps)."""
    p = Path(path)
    if not p.exists():
        raise ConfigError(f"inventory {p} does not exist")
    hostvars, groups = _inventory_hostvars(p)
    found: list[Endpoint] = []
    for name, hv in sorted(hostvars.items()):
        if group and group not in groups.get(name, set()) | set(hv.get("group_names") or []):
            continue
        if host and host != name:
            continue
        engines = hv.get(INV_ENGINES, list(DEPLOYED))
        if isinstance(engines, str):  # an INI [vars] section hands the value over as a string: "vllm,ollama"
            engines = [e for e in (x.strip().strip("'\"") for x in engines.strip().strip("[]").split(",")) if e]
        if not isinstance(engines, list):
            raise ConfigError(f"{name}: {INV_ENGINES} must be a list, not {engines!r}")
        address = str(hv.get("healthcheck_address") or hv.get("ansible_host") or name).strip()
        if hv.get("ansible_connection") == "local" and "ansible_host" not in hv:
            address = "127.0.0.1"
        if not address or any(c in address for c in "/?#@ \t") or address.count("]") > 1:
            raise ConfigError(f"{name}: address {address!r} (healthcheck_address / ansible_host) is not a host name "
                              "or IP address")
        if ":" in address and not address.startswith("["):  # an IPv6 address in a URL goes in brackets
            address = f"[{address}]"
        for engine in engines:
            spec = CATALOGUE.get(engine)
            if spec is None or not spec.deployed or spec.ansible_port is None:
                raise ConfigError(f"{name}: unknown engine {engine!r} in {INV_ENGINES}")
            raw_port: Any = hv.get(spec.ansible_port, spec.default_port)
            text = str(raw_port).strip() if isinstance(raw_port, int | str) and not isinstance(raw_port, bool) else ""
            port = ascii_uint(text, 5)
            if port is None or not 1 <= port <= 65535:
                raise ConfigError(f"{name}: {spec.ansible_port} must be a port number (1-65535), not {raw_port!r}")
            model: Any = hv.get(spec.ansible_model) if spec.ansible_model else None
            if isinstance(model, int | float) and not isinstance(model, bool):
                model = str(model)  # YAML reads a model named 7 as a number
            if model is not None and not (isinstance(model, str) and model.strip()):
                raise ConfigError(f"{name}: {spec.ansible_model} must be a model name, not {model!r}")
            gpu = hv.get("inference_stack_gpu")
            expect_gpu = None if gpu is None else ansible_bool(gpu, f"{name}: inference_stack_gpu")
            found.append(Endpoint(
                engine=engine,
                url=_inventory_url(name, address, port),
                model=model,
                name=f"{name}/{engine}",
                expect_gpu=expect_gpu,
                meta={"host": name},
            ))
    if not found:
        where = (f" group {group}" if group else "") + (f" host {host}" if host else "")
        raise ConfigError(f"no hosts with engines in inventory {p}{where}")
    return found


def _inventory_url(name: str, address: str, port: int) -> str:
    try:
        return normalise_url(f"http://{address}:{port}")
    except ConfigError as exc:
        raise ConfigError(f"{name}: {exc.reason}") from None


def with_defaults(eps: list[Endpoint], models: Mapping[str | None, str],
                  key_files: Mapping[str | None, str]) -> list[Endpoint]:
    """Apply --model / --api-key-file: the key ``None`` holds a bare value (every endpoint), an engine name
    that engine's value. Per-engine values win over bare ones, both over discovered values. Endpoints whose
    engine is not known yet keep the per-engine values for :meth:`Endpoint.as_engine`."""
    per_engine: dict[str, dict[str, str]] = {}
    for kind, values in (("model", models), ("api_key_file", key_files)):
        for engine, value in values.items():
            if engine is not None:
                per_engine.setdefault(engine, {})[kind] = value
    out = []
    for e in eps:
        e = replace(e, model=models.get(None) or e.model, api_key_file=key_files.get(None) or e.api_key_file,
                    per_engine=per_engine)
        out.append(e.as_engine(e.engine) if e.engine else e)
    return out
