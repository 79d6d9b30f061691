"""A compose project as Compose reads it: ``.env`` files (compose-go's dotenv), interpolation, the files and
overrides it picks, the project name, and the engines its labelled services publish.

No network I/O here. Every problem raises :class:`ConfigError` with a one-line message naming the bad value.
"""

from __future__ import annotations

import collections
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from ..engines import CATALOGUE, NAMES
from ..errors import ConfigError
from ..numbers import ascii_uint
from .url import Endpoint

LABEL = "io.gpu-inference-kit"  # compose labels: io.gpu-inference-kit.engine / .model / .port / .gpu

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

