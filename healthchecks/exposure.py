"""No engine exposed without authentication: the one rule compose-preflight, the Ansible settings check (the first
play, roles/preflight) and the pyinfra deploy apply before any change.

An engine whose port is published on an address other than loopback (127.0.0.0/8, ::1, localhost) must require an
API key on every route that runs a model. An engine that can take one and whose key guards every such route (the
catalogue gives it an API key file setting and ``api_key_open_routes: []``: llama.cpp, the gateway) must be given
one; an engine that cannot take one (Ollama) or whose key leaves routes open (vLLM: its key guards only /v1, /v2,
/inference and /cohere, so ``/invocations`` answers without it) is never published beyond loopback: the gateway is
the way in from the network. A lab that accepts engines anyone on its network can use says so once
(``preflight_allow_unauthenticated``, compose ``ALLOW_UNAUTHENTICATED=1``).

Which address each engine's port is published on is read from the compose file the deployers ship (its ``ports:``
lines and the settings they interpolate), so a per-engine bind setting (``OLLAMA_BIND_ADDRESS``) counts as well
as the shared one (``BIND_ADDRESS``). Everything here is pure: settings in, one line per refused engine out; the
callers read the key files (only whether they hold a key, never their content).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from . import stack
from .endpoints.compose import interpolate

# the kit's compose file: what Ansible and pyinfra ship with the .env they render
KIT_COMPOSE = Path(__file__).resolve().parent.parent / "compose" / "compose.yaml"
_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::?[-?][^}]*)?\}|\$([A-Za-z_][A-Za-z0-9_]*)")


@dataclass(frozen=True)
class Binding:
    """One published port of an engine: the host address and what chose it (a setting's name, or the compose
    file itself when the address is written there)."""

    address: str
    setting: str


@dataclass(frozen=True)
class Published:
    """An engine that will run: where its port is published, the setting that gives it an API key (None: the engine
    cannot take one, or this deployer cannot give it one) and whether it has one."""

    engine: str
    bindings: tuple[Binding, ...]
    key_setting: str | None
    keyed: bool
    key_gap: str | None = None  # why its key is not enough (a route answers without it); None: the key guards all


def key_gap(name: str, catalogue: stack.Catalogue | None = None) -> str | None:
    """Why ``name``'s API key does not protect it, in a few words, from the catalogue's ``api_key_open_routes`` (the
    routes that answer without the key, cited from the engine's source); None when its key guards every inference
    route, or when it takes no key at all (refusals() says that). Absent from the catalogue: not known to guard."""
    cat = catalogue or stack.load()
    entry = cat.engines.get(name)
    if entry is None or key_file_setting(name, cat) is None:
        return None
    title = entry.title
    routes = open_routes().get(name)
    if routes is None:
        return f"{title}'s API key is not known to guard every route"
    if routes:
        return f"{title}'s API key does not guard every route ({routes[0]} answers without it)"
    return None


@cache
def open_routes() -> dict[str, tuple[str, ...]]:
    """The catalogue's ``api_key_open_routes`` per engine (healthchecks/stack.yml); an engine without one is absent."""
    doc = yaml.safe_load(stack.PATH.read_text(encoding="utf-8"))
    engines = doc.get("engines") if isinstance(doc, dict) else None
    out = {}
    for name, raw in (engines or {}).items():
        if isinstance(raw, Mapping) and isinstance(raw.get("api_key_open_routes"), list):
            out[str(name)] = tuple(str(r) for r in raw["api_key_open_routes"])
    return out


def is_loopback(address: str) -> bool:
    """127.0.0.0/8, ::1 or ``localhost``; every other address (0.0.0.0, ::, a host's address, "") is the network."""
    text = address.strip().strip("[]")
    if text.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(text.split("%")[0]).is_loopback
    except ValueError:
        return False


def refusals(engines: Sequence[Published], *, allow_unauthenticated: bool, allow_setting: str) -> list[str]:
    """One line per engine published beyond loopback without an API key on every route (none, or one that leaves
    routes open: ``key_gap``), naming the settings to change; none when the lab opted out (``allow_setting`` is how
    it does: ``ALLOW_UNAUTHENTICATED=1``)."""
    if allow_unauthenticated:
        return []
    out = []
    for e in engines:
        exposed = [b for b in e.bindings if not is_loopback(b.address)]
        if not exposed or (e.keyed and e.key_gap is None):
            continue
        b = exposed[0]
        where = f"{e.engine} would be published on {b.address or '0.0.0.0'} ({b.setting})"
        if e.key_setting is not None and e.key_gap is not None:  # a key would not be enough: keyed or not
            out.append(f"{where}: {e.key_gap}: publish it on 127.0.0.1 (the gateway is the way in from the "
                       f"network), or set {allow_setting} to accept an engine anyone on the network can use")
        elif e.key_setting is None:
            out.append(f"{where} but cannot require an API key here: publish it on 127.0.0.1 (the gateway is the "
                       f"way in from the network), or set {allow_setting} to accept an engine anyone on the network "
                       "can use")
        else:
            out.append(f"{where} without an API key: give it one ({e.key_setting}), publish it on 127.0.0.1, or set "
                       f"{allow_setting} to accept an engine anyone on the network can use")
    return out


# -- where each engine is published: the compose file's ports lines ---------------------------------------------
def bindings(doc: Mapping[str, Any], env: Mapping[str, str], service: str,
             names: Mapping[str, str] | None = None) -> tuple[Binding, ...]:
    """The host addresses ``service``'s ports are published on, as compose interpolates them with ``env``; each
    named by the variable that chose it (``names`` renames variables, e.g. to Ansible's names)."""
    services = doc.get("services")
    svc = services.get(service) if isinstance(services, Mapping) else None
    ports = svc.get("ports") if isinstance(svc, Mapping) else None
    out = []
    for p in ports if isinstance(ports, list) else []:
        if isinstance(p, Mapping):  # long syntax: host_ip (absent: every interface)
            if p.get("published") in (None, ""):
                continue
            raw = str(p.get("host_ip") or "")
        else:
            host = _host_part(str(p))
            if host is None:
                continue
            raw = host
        address = interpolate(raw, env, f"service {service}: ports") if raw else ""
        var = _VAR.search(raw)
        name = (var.group(1) or var.group(2)) if var else None
        what = (names or {}).get(name, name) if name else f"the compose file's ports of {service}"
        out.append(Binding(address.strip("[]") or "0.0.0.0", what))
    return tuple(out)


def _host_part(text: str) -> str | None:
    """The host address part of a short-syntax port (``[HOST:]PUBLISHED:TARGET[/proto]``), "" when absent, None
    when nothing is published. ``:`` inside ``${VAR:-default}`` or ``[ipv6]`` does not split."""
    parts, cur, braces, brackets = [], "", 0, 0
    for ch in text.split("/")[0]:
        braces += (ch == "{") - (ch == "}")
        brackets += (ch == "[") - (ch == "]")
        if ch == ":" and braces == 0 and brackets == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    parts.append(cur)
    if len(parts) == 1:
        return None  # a container port only: a random host port, not how an engine is published
    return ":".join(parts[:-2])  # "" without a host part; an unbracketed IPv6 address keeps its colons


# -- the engines' API keys: the catalogue's key file setting -------------------------------------------------------
# What an engine reads from its key file, after the compose entrypoints' one rule (compose/compose.yaml): whitespace
# around a key (a trailing newline, CRLF, tabs) is not part of it, and a file of nothing but whitespace holds NO key
# (the engine runs without one). Whitespace is the ASCII set (space, \t, \n, \r, \v, \f): POSIX [[:space:]] in the
# C locale, which the entrypoints' sed trims, and bytes.strip(). llama-server reads its file one key per line and
# skips lines starting with "#" (llama.cpp common/arg.cpp, --api-key-file); vLLM takes the one value of
# VLLM_API_KEY (vllm/entrypoints/serve/middleware/register.py), so there "#..." is a key like any other.
_WHITESPACE = b" \t\n\r\x0b\x0c"
COMMENTED_KEY_FILES = frozenset({"llamacpp"})  # engines whose key file may hold "#" comment lines


def file_keys(engine: str, data: bytes | str) -> list[str]:
    """The keys ``engine`` takes from a key file holding ``data`` (never shown): one per non-blank line, stripped,
    without comment lines, for llama.cpp; the whole content stripped for the others. [] is no key."""
    raw = data.encode("utf-8", "surrogateescape") if isinstance(data, str) else data
    if engine in COMMENTED_KEY_FILES:  # split on \n only, as sed and llama.cpp's std::getline do
        lines = (ln.strip(_WHITESPACE) for ln in raw.split(b"\n"))
        return [ln.decode("utf-8", "replace") for ln in lines if ln and not ln.startswith(b"#")]
    text = raw.strip(_WHITESPACE)
    return [text.decode("utf-8", "replace")] if text else []


def key_text(value: Any, engine: str = "") -> str:
    """A deployer's key value as the key file hf_secret writes: whitespace around it removed (the ASCII set of the
    rule above, not Python's wider str.strip()), so a blank value writes an empty file; None is "". For an engine
    whose key file may hold comments (llama.cpp): its keys one per line, without the comment and blank lines, so
    what verify and the gateway send is the key itself, as llama-server reads it."""
    if value is None:
        return ""
    if engine in COMMENTED_KEY_FILES:
        return "\n".join(file_keys(engine, str(value)))
    return str(value).strip(_WHITESPACE.decode("ascii"))


def holds_key(engine: str, data: bytes | str | None) -> bool:
    """Whether a key file (or a deployer's key value) holding ``data`` gives ``engine`` a key: the one rule every
    reader follows (compose-preflight, the Ansible settings check, verify, the compose entrypoints). None, empty
    and whitespace-only are no key."""
    if data is None:
        return False
    return bool(file_keys(engine, data if isinstance(data, (bytes, str)) else str(data)))


def key_file_setting(name: str, catalogue: stack.Catalogue | None = None) -> stack.Setting | None:
    """The setting holding ``name``'s API key file: the catalogue's ``api_key_file_setting``, else its setting
    ``<engine>_api_key_file``; None for an engine that cannot take a key."""
    cat = catalogue or stack.load()
    entry = cat.engines.get(name)
    if entry is not None and entry.api_key_file_setting is not None:
        return entry.api_key_file_setting
    return cat.settings.get(f"{name}_api_key_file")


@cache
def kit_compose() -> dict[str, Any]:
    """The kit's compose file (compose/compose.yaml), which Ansible and pyinfra ship."""
    doc = yaml.safe_load(KIT_COMPOSE.read_text(encoding="utf-8"))
    return doc if isinstance(doc, dict) else {}


# -- a compose project (compose-preflight) ------------------------------------------------------------------------
def compose_refusals(doc: Mapping[str, Any], env: Mapping[str, str], services: Sequence[str],
                     keyed: Mapping[str, bool], catalogue: stack.Catalogue | None = None) -> list[str]:
    """The rule for a compose project: ``doc`` its merged compose files (not interpolated), ``env`` its settings
    (.env and the process environment, as compose resolves them), ``services`` the engines to start, ``keyed``
    whether each engine's key file holds a key (read by the caller)."""
    cat = catalogue or stack.load()
    allow = cat.settings["preflight_allow_unauthenticated"]
    try:
        allowed = bool(allow.convert(env.get(allow.env or "", ""), source="env"))
    except stack.SettingError:
        return []  # named by the settings check
    published = []
    for e in services:
        if e not in cat.engines:
            continue
        ks = key_file_setting(e, cat)
        published.append(Published(e, bindings(doc, env, e), ks.env if ks else None, bool(keyed.get(e)),
                                   key_gap(e, cat)))
    return refusals(published, allow_unauthenticated=allowed, allow_setting=f"{allow.env}=1")


# -- the deployers' settings (Ansible names: the inventory, -e, pyinfra --data) -------------------------------------
def deployer_refusals(values: Mapping[str, Any], *, keyed: Mapping[str, bool], key_names: Mapping[str, str],
                      compose: Mapping[str, Any] | None = None, catalogue: stack.Catalogue | None = None) -> list[str]:
    """The rule for a deployer that renders the compose .env from its settings (``values`` by their Ansible names,
    typed or as text): the engines it runs (``inference_stack_engines``), the address each is published on (the
    .env it renders: every catalogue setting with an Ansible name, the others at compose's default), whether each
    has a key (``keyed``, engine -> bool, read by the caller) and what gives it one (``key_names``, engine -> the
    deployer's setting). Settings that do not convert are left to the settings check."""
    cat = catalogue or stack.load()
    typed: dict[str, Any] = {}
    for name, setting in cat.by_ansible().items():
        if values.get(name) is not None:
            try:
                typed[name] = setting.convert(values[name], name=name)
            except stack.SettingError:
                return []  # the settings check names it; the rule needs every value
    env = cat.env_defaults()
    names: dict[str, str] = {}
    for s in cat.settings.values():
        if s.env and s.ansible:
            env[s.env] = s.env_text(typed.get(s.ansible, s.default))
            names[s.env] = s.ansible
    engines_setting = cat.settings["engines"]
    engines = typed.get(engines_setting.ansible or "", engines_setting.default)
    allow = cat.settings["preflight_allow_unauthenticated"]
    doc = kit_compose() if compose is None else compose
    published = []
    for e in engines:
        key = key_names.get(e) if e in cat.engines and key_file_setting(e, cat) else None
        if e in cat.engines:  # a key the deployer cannot hand to the engine is no key
            published.append(Published(e, bindings(doc, env, e, names), key, key is not None and bool(keyed.get(e)),
                                       key_gap(e, cat)))
    return refusals(published, allow_unauthenticated=bool(typed.get(allow.ansible or "", allow.default)),
                    allow_setting=f"{allow.ansible}: true")


def ansible_refusals(hostvars: Mapping[str, Any], options: Collection[str], allow_default: Any = None) -> list[str]:
    """The rule for an Ansible host (``hostvars[inventory_hostname]``, read only for the settings it needs): an
    engine's key is ``hf_secret_<engine>_api_key``, else ``vault_<engine>_api_key``; the roles can give an engine a
    key when the hf_secret role has that option (``options``: the roles' argument-spec options; it writes the key
    file). ``allow_default``: the preflight role's default of the opt-out (role defaults are not host vars)."""
    cat = stack.load()
    values = {n: hostvars[n] for n in cat.by_ansible() if n in hostvars}
    allow = cat.settings["preflight_allow_unauthenticated"].ansible or ""
    if allow not in values and allow_default is not None:
        values[allow] = allow_default
    keyed = {}
    for e in cat.engines:
        own, vault = f"hf_secret_{e}_api_key", f"vault_{e}_api_key"
        key = hostvars[own] if own in hostvars else hostvars.get(vault)
        keyed[e] = holds_key(e, key)
    key_names = {e: f"vault_{e}_api_key" for e in cat.engines if f"hf_secret_{e}_api_key" in options}
    return deployer_refusals(values, keyed=keyed, key_names=key_names, catalogue=cat)
