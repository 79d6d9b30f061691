"""``compose-preflight``: validate a compose project's settings before ``up`` and name every bad value.

Checks .env syntax and values (ports, fractions, flags, addresses), that the secret files exist as
regular files and are not readable by others, that no engine is published beyond loopback without an API
key on every inference route (healthchecks/exposure.py: vLLM's key leaves /invocations open, so vLLM stays on
loopback keyed or not; ALLOW_UNAUTHENTICATED=1 opts out), that model paths under MODELS_DIR exist,
that enabled engines do not share a port on one address, and that each port is free on the address its
service really binds (its compose ports line: BIND_ADDRESS, OLLAMA_BIND_ADDRESS, GATEWAY_BIND_ADDRESS), or
already held by this same project. With the gateway among the services: its master key file holds a key
LiteLLM accepts, its rendered config (GATEWAY_CONFIG_FILE) is a LiteLLM config with a model_list, and its TLS
certificate and key (GATEWAY_TLS_CERT_FILE, GATEWAY_TLS_KEY_FILE), when set, are a pair that loads.
Never prints a secret's content.
"""

from __future__ import annotations

import errno
import hashlib
import ipaddress
import os
import socket
import ssl
import stat
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from . import __version__, exposure, gateway
from .endpoints.compose import compose_files, load_compose, project_name, read_dotenv
from .errors import ConfigError
from .numbers import ascii_int
from .stack import SettingError
from .stack import load as load_stack

# The stack catalogue (stack.yml): every .env setting compose reads, with its default, type, range and format
STACK = load_stack()
ENV_SETTINGS = STACK.by_env()
# compose services that run an engine: service -> (port setting, default port)
ENGINE_PORTS = {name: (e.port_setting.env, e.port) for name, e in STACK.engines.items() if e.port_setting.env}
# service -> the .env setting holding its model path under /models
MODEL_PATHS = {name: e.model_path_setting.env for name, e in STACK.engines.items()
               if e.model_path_setting and e.model_path_setting.env}
NON_EMPTY = tuple(n for n, s in ENV_SETTINGS.items() if s.required)
# compose reads these from the process environment too (which wins over .env, as in compose)
PREFIXES = tuple(sorted({n.split("_", 1)[0] + "_" for n in ENV_SETTINGS}))
DEFAULTS = STACK.env_defaults()

# The gateway (compose service ``gateway``) cannot start without its master key: the compose entrypoint exits
# when the gateway_master_key secret is empty (it reads an empty file as "none"), whatever the config says, and
# LiteLLM 1.110 refuses a blank or publicly known key unless its config sets general_settings.
# dangerously_permit_weak_or_unset_master_key: true (litellm/proxy/auth/master_key_boot_check.py:
# PUBLICLY_KNOWN_MASTER_KEY_SHA256_DIGESTS, the sha256 of its documentation's example key).
GATEWAY = "gateway"
GATEWAY_KEY_OPT_OUT = "dangerously_permit_weak_or_unset_master_key"
PUBLICLY_KNOWN_MASTER_KEYS_SHA256 = frozenset({"88dc28d0f030c55ed4ab77ed8faf098196cb1c05df778539800c9f1243fe6b4b"})


def settings(project: Path, environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """.env values overridden by the process environment, as compose resolves them."""
    src = os.environ if environ is None else environ
    env = read_dotenv(project / ".env", src)
    env.update({k: v for k, v in src.items() if k in env or k in DEFAULTS or k.startswith(PREFIXES)})
    for k, v in env.items():
        if "\x00" in v:
            raise ConfigError(f"{k} contains a NUL byte: no file name or setting can")
    return env


def _get(env: Mapping[str, str], key: str) -> str:
    return env.get(key) or DEFAULTS.get(key, "")


def _show(value: str) -> str:
    """A setting's value for a message: quoted, cut to a readable length."""
    return repr(value) if len(value) <= 40 else repr(value[:37]) + "..."


def port_number(value: str) -> int | None:
    """A TCP port 1-65535 in ASCII digits, else None."""
    n = ascii_int(value, 5)
    return n if n is not None and 1 <= n <= 65535 else None


def _check_values(env: Mapping[str, str]) -> list[str]:
    """Every catalogued setting the .env (or the environment) sets, checked by its type, range and format; an
    empty value is compose's default, except for settings that may not be empty."""
    errors = []
    for key in NON_EMPTY:
        if key in env and env[key].strip() == "":
            errors.append(f"{key} is set but empty in .env: remove the line or give it a value")
    for key, setting in ENV_SETTINGS.items():
        if env.get(key):
            try:
                setting.convert(env[key], name=key, source="env")
            except SettingError as exc:
                errors.append(str(exc))
    return errors


def _path(project: Path, raw: str) -> Path:
    return (project / raw) if not os.path.isabs(raw) else Path(raw)


def _check_secret(project: Path, env: Mapping[str, str], key: str, *, optional: bool = True) -> list[str]:
    """The secret file ``key`` names exists, is a regular file and is not readable by others; ``optional``: an
    empty file is allowed (no token, a keyless engine), else it must be given content (said in the advice)."""
    raw = _get(env, key)
    path = _path(project, raw)
    try:
        st = path.stat()
    except FileNotFoundError:
        if not optional:
            return [f"secret file {raw} ({key}) does not exist: put the key there, e.g. "
                    f"`(umask 077; echo \"sk-$(openssl rand -hex 32)\" > {path})`"]
        return [f"secret file {raw} ({key}) does not exist: create it, e.g. "
                f"`install -m 600 /dev/null {path}` (leave it empty if unused)"]
    except OSError as exc:
        return [f"secret file {raw} ({key}) cannot be read: {exc.strerror}"]
    if not stat.S_ISREG(st.st_mode):
        return [f"secret file {raw} ({key}) is not a regular file"]
    if st.st_mode & 0o077:
        return [f"secret file {raw} ({key}) has mode {stat.S_IMODE(st.st_mode):04o}: "
                f"make it 0600 or stricter (chmod 600 {path})"]
    return []


def _has_key(project: Path, env: Mapping[str, str], engine: str, key: str) -> bool:
    """Whether the key file ``key`` names gives ``engine`` a key (exposure.holds_key: empty, whitespace-only or, for
    llama.cpp, comment-only is no key); its content is never shown."""
    path = _path(project, _get(env, key))
    try:
        return path.is_file() and exposure.holds_key(engine, path.read_bytes())
    except OSError:
        return False


def _check_exposure(project: Path, env: Mapping[str, str], doc: Mapping[str, object],
                    services: list[str]) -> list[str]:
    """No engine published beyond loopback without an API key (the one rule: healthchecks/exposure.py)."""
    keyed = {}
    for name in services:
        setting = exposure.key_file_setting(name, STACK)
        keyed[name] = bool(setting and setting.env and _has_key(project, env, name, setting.env))
    try:
        return exposure.compose_refusals(doc, env, services, keyed, STACK)
    except ConfigError as exc:  # a ${VAR:?message} in a ports line
        return [str(exc)]


def _gateway_config(project: Path, env: Mapping[str, str]) -> tuple[dict[str, Any] | None, list[str]]:
    """The gateway's rendered LiteLLM config (GATEWAY_CONFIG_FILE, mounted as /etc/litellm/config.yaml): a YAML
    mapping with a non-empty ``model_list``. The config, or None with one line saying why not."""
    key = STACK.settings["gateway_config_file"].env or ""
    raw = _get(env, key)
    path = _path(project, raw)
    render = "render it with `python -m healthchecks.gateway --env .env -o gateway/config.yaml`"
    where = f"{key} ({raw})"
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None, [f"{where} does not exist: {render}"]
    except IsADirectoryError:
        return None, [f"{where} is a directory, not the gateway's config file: {render}"]
    except UnicodeDecodeError:
        return None, [f"{where} is not UTF-8 text: {render}"]
    except OSError as exc:
        return None, [f"{where} cannot be read: {exc.strerror}"]
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" (line {mark.line + 1})" if mark is not None else ""
        return None, [f"{where} is not valid YAML{at}: {render}"]
    if not isinstance(doc, dict):
        return None, [f"{where} is not a YAML mapping with a model_list: {render}"]
    models = doc.get("model_list")
    if not isinstance(models, list) or not models:
        return None, [f"{where} has no model_list (the gateway's routes): {render}"]
    general = doc.get("general_settings")
    wanted = f"os.environ/{gateway.MASTER_KEY_ENV}"  # what the entrypoint exports from the master key file
    if not isinstance(general, dict) or general.get("master_key") != wanted:
        return doc, [f"{where}: general_settings.master_key must be {wanted} (the key file's content, as "
                     "healthchecks.gateway renders it)"]
    return doc, []


def _check_gateway(project: Path, env: Mapping[str, str]) -> list[str]:
    """The gateway's config and master key: LiteLLM starts with them (the key's content is never shown)."""
    config, errors = _gateway_config(project, env)
    general = config.get("general_settings") if config else None
    opt_out = isinstance(general, dict) and general.get(GATEWAY_KEY_OPT_OUT) is True
    setting = exposure.key_file_setting(GATEWAY, STACK)
    key = setting.env if setting and setting.env else ""
    problems = _check_secret(project, env, key, optional=False)
    if problems:
        return errors + problems
    raw = _get(env, key)
    try:
        value = _path(project, raw).read_bytes().strip()
    except OSError as exc:
        return [*errors, f"secret file {raw} ({key}) cannot be read: {exc.strerror}"]
    how = f"`(umask 077; echo \"sk-$(openssl rand -hex 32)\" > {_path(project, raw)})`"
    if value in (b"", b"none"):  # the entrypoint reads an empty file as "none" and stops
        errors.append(f"{key} ({raw}) holds no key: the gateway refuses to start without its master key "
                      f"(clients send it as their Bearer key): put one there, e.g. {how}")
    elif hashlib.sha256(value).hexdigest() in PUBLICLY_KNOWN_MASTER_KEYS_SHA256 and not opt_out:
        errors.append(f"{key} ({raw}) holds a publicly known example key, which LiteLLM refuses: put a key of "
                      f"your own there, e.g. {how}")
    return errors + _check_gateway_hf_token(project, env, config)


def _check_gateway_hf_token(project: Path, env: Mapping[str, str], config: Mapping[str, Any] | None) -> list[str]:
    """A config whose routes fall back to Hugging Face (a deployment with ``api_key: os.environ/HF_TOKEN``, what
    ``GATEWAY_HF_FALLBACK_MODEL`` renders) needs a token in the hf_token secret: LiteLLM would send ``none`` and get
    401 exactly when every replica is down. Only whether the file holds a token is read, never its content."""
    wanted = f"os.environ/{gateway.HF_TOKEN_ENV}"
    models = config.get("model_list") if config else None
    if not any(isinstance(m, Mapping) and isinstance(m.get("litellm_params"), Mapping)
               and m["litellm_params"].get("api_key") == wanted for m in models or []):
        return []
    key = STACK.settings["hf_token_file"].env or "HF_TOKEN_FILE"
    raw = _get(env, key)
    try:
        held = exposure.key_text(_path(project, raw).read_text(encoding="utf-8", errors="replace"))
    except OSError as exc:
        return [f"{key} ({raw}) cannot be read: {exc.strerror}: the gateway's Hugging Face fallback needs the token"]
    if not held:
        return [f"the gateway falls back to Hugging Face (GATEWAY_HF_FALLBACK_MODEL) but {key} ({raw}) holds no "
                "token: the fallback would get 401 when it is needed; put a Hugging Face token there or render "
                "the config without the fallback"]
    return []


def _check_gateway_tls(project: Path, env: Mapping[str, str]) -> list[str]:
    """TLS with the lab's certificate: both files or neither (/dev/null). The entrypoint serves HTTPS only when both
    hold something and plain HTTP otherwise, without a word: a lab that set one, or an empty one, is told here. The
    pair must load as the server will load it (PEM certificate chain and its unencrypted private key)."""
    cert_key = STACK.settings["gateway_tls_cert_file"].env or ""
    key_key = STACK.settings["gateway_tls_key_file"].env or ""
    cert_raw, key_raw = _get(env, cert_key), _get(env, key_key)
    if cert_raw == os.devnull and key_raw == os.devnull:
        return []
    if os.devnull in (cert_raw, key_raw):
        have, lack = (cert_key, key_key) if key_raw == os.devnull else (key_key, cert_key)
        return [f"{have} is set but {lack} is not: the gateway would serve plain HTTP; set both (TLS) or neither"]
    errors = _check_secret(project, env, key_key, optional=False)
    cert = _path(project, cert_raw)
    try:
        if not cert.is_file():
            errors.append(f"{cert_key} ({cert_raw}) does not exist or is not a regular file: the lab's "
                          "certificate (PEM) goes there")
    except OSError as exc:
        errors.append(f"{cert_key} ({cert_raw}) cannot be read: {exc.strerror}")
    if errors:
        return errors
    empty = [k for k, raw in ((cert_key, cert_raw), (key_key, key_raw)) if _path(project, raw).stat().st_size == 0]
    if empty:
        return [f"{empty[0]} is empty: the gateway would serve plain HTTP; put the lab's PEM file there"]
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:  # a callable password: an encrypted key fails here instead of OpenSSL prompting on the terminal
        ctx.load_cert_chain(cert, _path(project, key_raw), password=lambda: b"")
    except ssl.SSLError as exc:
        why = "the key does not belong to the certificate" if "KEY_VALUES_MISMATCH" in str(exc) else \
            "not a PEM certificate and its unencrypted private key"
        return [f"{cert_key} ({cert_raw}) and {key_key} ({key_raw}) do not load: {why}"]
    except OSError as exc:
        return [f"{cert_key} ({cert_raw}) and {key_key} ({key_raw}) cannot be read: {exc.strerror}"]
    return []


def _check_models(project: Path, env: Mapping[str, str], services: list[str]) -> list[str]:
    models_raw = _get(env, "MODELS_DIR")
    models = (project / models_raw) if not os.path.isabs(models_raw) else Path(models_raw)
    if not models.is_dir():
        if models.exists():
            return [f"MODELS_DIR ({models_raw}) is not a directory: point MODELS_DIR at your model folder"]
        return [f"MODELS_DIR ({models_raw}) does not exist: create it or point MODELS_DIR at your model folder"]
    errors = []
    for svc, key in MODEL_PATHS.items():
        if svc not in services:
            continue
        value = _get(env, key)
        if value.startswith("/models/") and not (models / value[len("/models/"):]).exists():
            errors.append(f"{key}={value} not found: {models / value[len('/models/'):]} does not exist")
    return errors


def _bind_problem(bind: str, port: int) -> int | None:
    """None when ``bind:port`` can be bound now, else the errno (EADDRINUSE: another process holds it,
    EADDRNOTAVAIL: the address is not on this host). A privileged port is Docker's to bind (as root): free."""
    family = socket.AF_INET6 if ":" in bind else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_STREAM) as s:  # no IPv6 on this host: EAFNOSUPPORT
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind((bind, port))
    except PermissionError:
        return None
    except socket.gaierror:  # e.g. an IPv6 scope (fe80::1%eth9) naming no interface of this host
        return errno.EADDRNOTAVAIL
    except OSError as exc:
        return exc.errno or errno.EADDRINUSE
    return None


def _ports_held_by_project(project_name: str) -> set[int]:
    try:
        import docker
        from docker.errors import DockerException

        client = docker.from_env(timeout=5)
        held = set()
        for c in client.containers.list(filters={"label": f"com.docker.compose.project={project_name}"}):
            for bindings in ((c.attrs.get("HostConfig") or {}).get("PortBindings") or {}).values():
                for b in bindings or []:
                    hp = port_number(str(b.get("HostPort", "")))
                    if hp is not None:
                        held.add(hp)
        return held
    except (ImportError, DockerException):
        return set()


def _binds(doc: Mapping[str, object], env: Mapping[str, str], svc: str) -> list[tuple[str, str]]:
    """(address, setting) for every address ``svc`` publishes its port on, read from its compose ports lines as
    compose interpolates them (healthchecks/exposure.py): BIND_ADDRESS, OLLAMA_BIND_ADDRESS, GATEWAY_BIND_ADDRESS.
    Without the compose files (reported on their own), the shared BIND_ADDRESS."""
    services = doc.get("services")
    if not isinstance(services, Mapping) or svc not in services:
        return [(_get(env, "BIND_ADDRESS"), "BIND_ADDRESS")]
    try:
        found = exposure.bindings(doc, env, svc)
    except ConfigError:
        return []  # a ${VAR:?message} in the ports line: reported by the exposure check
    out: list[tuple[str, str]] = []
    for b in found:
        if (b.address, b.setting) not in out:
            out.append((b.address, b.setting))
    return out


def _ip(address: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    text = "127.0.0.1" if address.lower() == "localhost" else address.split("%")[0]
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def _overlap(a: str, b: str) -> bool:
    """Whether two published addresses take the same port: the same address, or a wildcard (0.0.0.0, ::) and any
    address of its family."""
    ia, ib = _ip(a), _ip(b)
    if ia is None or ib is None:
        return a == b
    return ia == ib or (ia.version == ib.version and (ia.is_unspecified or ib.is_unspecified))


def _check_ports(env: Mapping[str, str], services: list[str], project_name: str,
                 doc: Mapping[str, object] | None = None) -> list[str]:
    """No two services publish one port on one address, and each port is free on the address its service binds
    (its own compose ports line: a per-service *_BIND_ADDRESS counts, not only BIND_ADDRESS)."""
    errors = []
    chosen: list[tuple[str, int, str, str]] = []  # (address, port, "KEY (svc)", address setting)
    for svc in services:
        if svc not in ENGINE_PORTS:
            continue
        key, default = ENGINE_PORTS[svc]
        port = port_number(env.get(key) or str(default))
        if port is None:
            continue  # reported by _check_values
        clash = False
        for address, setting in _binds(doc or {}, env, svc):
            other = next((w for a, p, w, _ in chosen if p == port and _overlap(a, address)), None)
            if other is not None and not clash:
                errors.append(f"{key}={port} clashes with {other} on {address} ({setting}): every engine needs "
                              "its own port (or its own address)")
                clash = True
            chosen.append((address, port, f"{key} ({svc})", setting))
    ours = _ports_held_by_project(project_name) if chosen else set()
    unavailable: set[tuple[str, str]] = set()
    tried: set[tuple[str, int]] = set()
    for bind, port, who, setting in chosen:
        if _ip(bind) is None or (bind, setting) in unavailable or (bind, port) in tried:
            continue  # not an address: reported by _check_values
        tried.add((bind, port))
        problem = None if port in ours else _bind_problem(bind, port)
        if problem == errno.EADDRNOTAVAIL:
            unavailable.add((bind, setting))
            errors.append(f"{setting}={bind} is not an address of this host: use 127.0.0.1, 0.0.0.0 or "
                          "one of this host's addresses (ip -brief address)")
        elif problem == errno.EADDRINUSE:
            errors.append(f"port {port} on {bind} ({who}) is already in use by another process: "
                          f"stop it or change {who.split(' ')[0]} in .env")
        elif problem is not None:
            errors.append(f"port {port} on {bind} ({who}) cannot be bound: {os.strerror(problem)}")
    return errors


def preflight(project: Path, services: list[str], environ: Mapping[str, str] | None = None) -> list[str]:
    """Every problem found, one line each; empty when the project can start."""
    if not project.is_dir():
        raise ConfigError(f"{project} is not a directory (give the compose project directory)")
    src = os.environ if environ is None else environ
    env = settings(project, src)
    errors = _check_values(env)
    compose_env = {**read_dotenv(project / ".env", src), **src}
    missing = [f for f in compose_files(project, compose_env) if not f.is_file()]
    for f in missing:
        errors.append(f"COMPOSE_FILE names {f.name}, which is not in {project}")
    name = None
    doc: dict[str, object] = {}
    if not missing:
        _, _, doc = load_compose(project, src)
        name = doc.get("name")
    proj = project_name(project, compose_env, name if isinstance(name, str) else None)
    if not errors:  # the exposure rule needs every value right and the compose files read
        errors += _check_exposure(project, env, doc, services)
    errors += _check_secret(project, env, STACK.settings["hf_token_file"].env or "")
    for name in STACK.engines:
        key_file = exposure.key_file_setting(name, STACK)
        if name == GATEWAY or name not in services or not (key_file and key_file.env):
            continue
        if _get(env, key_file.env) != os.devnull:
            errors += _check_secret(project, env, key_file.env)
    if GATEWAY in services:
        errors += _check_gateway(project, env)
        errors += _check_gateway_tls(project, env)
    errors += _check_models(project, env, services)
    errors += _check_ports(env, services, proj, doc)
    return errors


def main(argv: list[str] | None = None) -> int:
    from .cli.common import EXIT_FAILED, EXIT_OK, Parser, fail, say

    prog = "compose-preflight"
    p = Parser(prog=prog, description=__doc__.splitlines()[0] if __doc__ else "",
               epilog="Exit codes: 0 the project can start, 1 problems found (one line each), "
                      "2 usage or configuration error.")
    p.add_argument("project", nargs="?", default="compose", help="compose project directory (default: compose)")
    p.add_argument("--services", default=",".join(STACK.deployed),
                   help=f"comma-separated services that will be started (default: {','.join(STACK.deployed)})")
    p.add_argument("--print-services", action="store_true",
                   help="when the project can start, print the compose services to start (the engines and their "
                        "companions, e.g. ollama-models) on stdout, for `docker compose up`")
    p.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    a = p.parse_args(argv)
    services = [s.strip() for s in a.services.split(",") if s.strip()]
    unknown = [s for s in services if s not in ENGINE_PORTS]
    if unknown:
        return fail(prog, f"unknown service(s) {', '.join(unknown)}; known: {', '.join(ENGINE_PORTS)}")
    try:
        errors = preflight(Path(a.project), services)
    except ConfigError as exc:
        return fail(prog, exc)
    for e in errors:
        say(f"{prog}: {e}", err=True)
    if errors:
        return EXIT_FAILED
    say(f"{prog}: {a.project} ready for {', '.join(services)}", err=a.print_services)
    if a.print_services:
        say(" ".join(STACK.services(services)))
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
