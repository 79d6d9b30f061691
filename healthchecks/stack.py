"""The catalogue of the kit's stack (``stack.yml`` beside this module): engines, ports and every setting of the
deployed stack with its names, default, type and range; text converted by those types; the verify command line.

Deployers and checkers read settings as text (an INI inventory, ``ansible-playbook -e name=value``, pyinfra
``--data name=value``, a compose ``.env``); :func:`convert` turns such text into the catalogue's type or raises
:class:`SettingError` with one line naming the setting. Already-typed values (YAML inventories) are checked the
same way. This module needs only PyYAML: Ansible's controller loads it too (roles/preflight's filter plugin).
"""

from __future__ import annotations

import ipaddress
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from .numbers import ascii_int

PATH = Path(__file__).with_name("stack.yml")
TYPES = ("str", "path", "int", "float", "bool", "list", "dict")
FORMATS = ("port", "duration", "size", "gpus", "address")
# Ansible's boolean words (ansible.module_utils.parsing.convert_bool, which the `bool` filter follows)
BOOL_TRUE = frozenset({"y", "yes", "on", "1", "true", "t"})
BOOL_FALSE = frozenset({"n", "no", "off", "0", "false", "f"})

_DECIMAL = re.compile(r"[-+]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][-+]?[0-9]{1,3})?")
_DURATION = re.compile(r"(?:[0-9]+(?:\.[0-9]+)?(?:ns|us|ms|s|m|h))+")  # compose (Go) durations: 90s, 1m30s
_SIZE = re.compile(r"[0-9]+(?:\.[0-9]+)?[bkmgBKMG]?[bB]?")  # compose byte sizes: 2g, 512m, 20m
_GPUS = re.compile(r"all|[0-9]{1,4}(?:,[0-9]{1,4})*")
_RANGE = re.compile(r"([\[(])\s*(-?[0-9.]*)\s*,\s*(-?[0-9.]*)\s*([\])])")


def plain(value: Any) -> Any:
    """Ansible's tagged/lazy containers, strings and numbers as plain Python values (the filter plugins' input;
    a YAML dumper represents only the plain types)."""
    if isinstance(value, str):
        return str(value)
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    for kind in (bool, int, float):
        if isinstance(value, kind):
            return kind(value)
    return value


class SettingError(ValueError):
    """A setting's value is not of its type or outside its range; the message names the setting."""


@dataclass(frozen=True)
class Range:
    """An interval: ``[1, 65535]``, ``(0, 1]``, ``[0, )`` (no upper bound)."""

    text: str
    low: float | None
    high: float | None
    low_open: bool
    high_open: bool

    @classmethod
    def parse(cls, text: str) -> Range:
        m = _RANGE.fullmatch(text.strip())
        if not m:
            raise ValueError(f"not an interval: {text!r}")
        lo, hi = (float(x) if x else None for x in (m.group(2), m.group(3)))
        return cls(text, lo, hi, m.group(1) == "(", m.group(4) == ")")

    def __contains__(self, x: object) -> bool:
        if not isinstance(x, int | float) or isinstance(x, bool) or (isinstance(x, float) and math.isnan(x)):
            return False
        if self.low is not None and (x <= self.low if self.low_open else x < self.low):
            return False
        return self.high is None or (x < self.high if self.high_open else x <= self.high)

    def words(self, kind: str) -> str:
        """``must be ...`` words for a value outside the range (the phrasing compose-preflight always used)."""
        if kind == "int" and self.high is None and not self.low_open and self.low is not None:
            low = int(self.low)
            return "a positive integer" if low == 1 else f"a whole number of at least {low}"
        if kind == "float" and self.high is not None and self.high <= 1:
            return f"a fraction in {self.text}"
        return f"{'a whole number' if kind == 'int' else 'a number'} in {self.text}"


@dataclass(frozen=True)
class Setting:
    """One setting of the stack (see the comment at the top of stack.yml)."""

    id: str
    type: str
    default: Any = None
    ansible: str | None = None
    env: str | None = None
    role: str | None = None
    env_default: Any = None  # the compose default as text ("" for none)
    range: Range | None = None
    choices: tuple[Any, ...] | None = None
    format: str | None = None
    required: bool = False
    elements: str | None = None
    min_length: int = 0
    derived: tuple[str, ...] = ()  # the role default is an expression of these settings
    no_log: bool = False  # holds a secret: a message names the setting, never shows its value

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(n for n in (self.ansible, self.env) if n)

    # -- conversion ---------------------------------------------------------------------------------------------
    def convert(self, value: Any, *, name: str | None = None, source: str = "ansible") -> Any:
        """``value`` in this setting's type (text converted as the tools give it), checked against its range,
        choices and format; else :class:`SettingError` naming ``name`` (default: the Ansible, else .env name).
        ``source="env"``: a compose .env value (booleans are 0/1, an empty value means compose's default)."""
        label = name or self.ansible or self.env or self.id
        shown = "" if self.no_log else f"={_show(value)}"
        try:
            out = _CONVERT[self.type](self, value, source)
        except _Bad as bad:
            raise SettingError(f"{label}{shown} {bad.words}") from None
        if self.range is not None and out is not None and out not in self.range:
            words = "is not a port number (1-65535)" if self.format == "port" else \
                f"must be {self.range.words(self.type)}"
            raise SettingError(f"{label}{shown} {words}")
        if self.choices is not None:
            items = out if isinstance(out, list) else [] if out in (None, "") and source == "env" else [out]
            wrong = [x for x in items if x not in self.choices]
            if wrong:
                raise SettingError(f"{label}{shown}: {_show(wrong[0])} is not one of "
                                   f"{', '.join(map(str, self.choices))}")
        if isinstance(out, list) and len(out) < self.min_length:
            raise SettingError(f"{label} must name at least {self.min_length} of "
                               f"{', '.join(map(str, self.choices or ()))}")
        if self.format and isinstance(out, str) and out != "" and not _FORMAT_OK[self.format](out):
            raise SettingError(f"{label}{shown} {_FORMAT_WORDS[self.format]}")
        return out

    def env_text(self, value: Any) -> str:
        """A typed value written as the compose .env takes it (booleans 1/0, lists comma-separated)."""
        if isinstance(value, bool):
            return "1" if value else "0"
        if isinstance(value, list):
            return ",".join(map(str, value))
        return "" if value is None else str(value)


class _Bad(Exception):
    def __init__(self, words: str) -> None:
        super().__init__(words)
        self.words = words


def _show(value: Any) -> str:
    """A value for a message: quoted, cut to a readable length."""
    text = value if isinstance(value, str) else repr(value)
    return repr(text) if len(text) <= 40 else repr(text[:37]) + "..."


def _int(s: Setting, v: Any, source: str) -> int | None:
    if isinstance(v, bool):
        raise _Bad("must be a whole number, not a boolean")
    if isinstance(v, int):
        return v
    if isinstance(v, float) and v.is_integer():
        return int(v)
    if isinstance(v, str):
        text = v.strip()
        if text == "" and source == "env":
            return None
        n = ascii_int(text.lstrip("+"), 18)
        if n is not None:
            return n
    raise _Bad("is not a port number (1-65535)" if s.format == "port" else
               f"must be {s.range.words('int')}" if s.range else "must be a whole number")


def _float(s: Setting, v: Any, source: str) -> float | None:
    if isinstance(v, bool):
        raise _Bad("must be a number, not a boolean")
    if isinstance(v, int | float) and math.isfinite(v):
        return float(v)
    if isinstance(v, str):
        text = v.strip()
        if text == "" and source == "env":
            return None
        if _DECIMAL.fullmatch(text):
            return float(text)
    raise _Bad(f"must be {s.range.words('float')}" if s.range else "must be a number")


def _bool(s: Setting, v: Any, source: str) -> bool | None:
    if isinstance(v, bool):
        return v
    if source == "env":  # compose's files take 0/1 (HF_HUB_OFFLINE)
        text = str(v).strip()
        if text == "":
            return None
        if text in ("0", "1"):
            return text == "1"
        raise _Bad("must be 0 or 1")
    if isinstance(v, int) and v in (0, 1):
        return v == 1
    if isinstance(v, str) and v.strip().lower() in BOOL_TRUE | BOOL_FALSE:
        return v.strip().lower() in BOOL_TRUE
    raise _Bad(f"must be a boolean ({', '.join(sorted(BOOL_TRUE))} or {', '.join(sorted(BOOL_FALSE))})")


def _list(s: Setting, v: Any, source: str) -> list[Any]:
    if isinstance(v, str):  # an INI inventory, -e or --data: "a,b"; -e as JSON gives a list
        text = v.strip()
        if s.elements == "dict":  # only JSON/YAML text can hold mappings: [{"registry": ..., ...}]
            parsed = _yaml_text(text, "must be a list of mappings: [{key: value, ...}]")
            if parsed is not None and not isinstance(parsed, list):
                raise _Bad("must be a list of mappings: [{key: value, ...}]")
            return _list(s, parsed or [], source)
        if text.startswith("["):
            try:
                parsed = yaml.safe_load(text)
            except yaml.YAMLError:
                raise _Bad("must be a list: a,b or [a, b]") from None
            if isinstance(parsed, list):
                return [str(x) for x in parsed]
        return [x.strip() for x in text.split(",") if x.strip()]
    if isinstance(v, list | tuple):
        if s.elements in ("str", "path") and not all(isinstance(x, str) for x in v):
            raise _Bad("must be a list of names")
        if s.elements == "dict" and not all(isinstance(x, Mapping) for x in v):
            raise _Bad("must be a list of mappings: [{key: value, ...}]")
        return list(v)
    raise _Bad("must be a list of mappings: [{key: value, ...}]" if s.elements == "dict" else
               "must be a list: a,b or [a, b]")


def _yaml_text(text: str, words: str) -> Any:
    """JSON or YAML text (``-e 'name=[...]'``, ``--data``) as data; never shows the text (it may hold a secret)."""
    try:
        return yaml.safe_load(text) if text else None
    except yaml.YAMLError:
        raise _Bad(words) from None


def _dict(s: Setting, v: Any, source: str) -> dict[str, Any]:
    if isinstance(v, str):
        v = _yaml_text(v.strip(), "must be a mapping: {key: value, ...}")
        if v is None:
            return {}
    if isinstance(v, Mapping):
        return dict(v)
    raise _Bad("must be a mapping: {key: value, ...}")


def _str(s: Setting, v: Any, source: str) -> str | None:
    if v is None:
        return None
    if isinstance(v, str):
        return v
    if isinstance(v, int | float) and not isinstance(v, bool):
        return str(v)  # YAML read `0,1` or `8` as a number; Ansible's str type converts it
    if isinstance(v, list) and all(isinstance(x, int | str) and not isinstance(x, bool) for x in v):
        return ",".join(map(str, v))  # an INI inventory's "0,1" is a list
    raise _Bad("must be text")


_CONVERT = {"int": _int, "float": _float, "bool": _bool, "list": _list, "str": _str, "path": _str, "dict": _dict}


def _address(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


_FORMAT_OK = {
    "port": lambda t: True,  # ports are ints: the range says it
    "duration": lambda t: bool(_DURATION.fullmatch(t)),
    "size": lambda t: bool(_SIZE.fullmatch(t)),
    "gpus": lambda t: bool(_GPUS.fullmatch(t.replace(" ", ""))),
    "address": _address,
}
_FORMAT_WORDS = {
    "port": "is not a port number (1-65535)",
    "duration": "must be a duration like 600s, 20m or 1h30m",
    "size": "must be a size like 2g, 512m or 20m",
    "gpus": "must be 'all' or comma-separated GPU ids like 0,1",
    "address": "is not an IP address (127.0.0.1 or 0.0.0.0)",
}


@dataclass(frozen=True)
class EngineEntry:
    """An engine of the stack: its container port and its settings."""

    name: str
    title: str
    port: int
    deployed: bool
    port_setting: Setting
    model_setting: Setting
    model_path_setting: Setting | None
    api_key_file_setting: Setting | None
    companions: tuple[str, ...] = ()
    model_check: str | None = None  # the compose service that checks the model can be had before the engine starts


@dataclass(frozen=True)
class Catalogue:
    engines: dict[str, EngineEntry]
    settings: dict[str, Setting]

    @property
    def deployed(self) -> list[str]:
        """The engines the deployers run, in the catalogue's order."""
        return [n for n, e in self.engines.items() if e.deployed]

    def services(self, engines: Sequence[str]) -> list[str]:
        """The compose services to start for ``engines``: each engine, then its companions."""
        out = list(engines)
        for e in engines:
            out += [c for c in self.engines[e].companions if c not in out] if e in self.engines else []
        return out

    def by_ansible(self) -> dict[str, Setting]:
        return {s.ansible: s for s in self.settings.values() if s.ansible}

    def by_env(self) -> dict[str, Setting]:
        return {s.env: s for s in self.settings.values() if s.env}

    def ansible_defaults(self, role: str | None = None) -> dict[str, Any]:
        return {s.ansible: s.default for s in self.settings.values()
                if s.ansible and (role is None or s.role == role)}

    def env_defaults(self) -> dict[str, str]:
        """compose's ``${VAR:-default}`` for every .env setting that has one."""
        return {s.env: s.env_text(s.env_default) for s in self.settings.values()
                if s.env and s.env_default is not None}

    def convert_all(self, values: Mapping[str, Any], *, source: str = "ansible",
                    gateway: bool | None = None) -> tuple[dict[str, Any], list[str]]:
        """Every catalogue setting present in ``values`` (by its Ansible name, or .env name for ``source="env"``)
        converted; and one line per bad setting. Cross-setting checks: the enabled engines' ports differ, and the
        gateway's too where the host runs it (``gateway``: see :meth:`port_clashes`)."""
        names = self.by_env() if source == "env" else self.by_ansible()
        out: dict[str, Any] = {}
        errors: list[str] = []
        for name, setting in names.items():
            if name in values and values[name] is not None:
                try:
                    out[name] = setting.convert(values[name], name=name, source=source)
                except SettingError as e:
                    errors.append(str(e))
        if source == "ansible" and not errors:
            on = runs_gateway(values) if gateway is None else gateway
            errors += self.port_clashes({**self.ansible_defaults(), **out}, gateway=on)
        return out, errors

    def bind_setting(self, service: str) -> Setting:
        """The setting of the address ``service`` is published on: its own (``<service>_bind_address``, e.g.
        ``gateway_bind_address``), else the stack's (``inference_stack_bind_address``): compose.yaml's ports lines
        (healthchecks/gateway.py ``bind_setting``; tests/unit/test_port_clashes.py holds them together)."""
        return self.settings.get(f"{service}_bind_address") or self.settings["bind_address"]

    def published(self, values: Mapping[str, Any], *, gateway: bool = False) -> list[Publish]:
        """Where a deployer publishes each port of a host (``values``: typed settings by their Ansible names):
        every enabled engine (``inference_stack_engines``), then the gateway where the host runs it. A bind setting
        without an Ansible name (``OLLAMA_BIND_ADDRESS``) is at compose's default: the deployers do not set it."""
        engines = list(values.get(self.settings["engines"].ansible or "", self.deployed) or [])
        if gateway and GATEWAY in self.engines and GATEWAY not in engines:
            engines.append(GATEWAY)
        out = []
        for name in engines:
            entry = self.engines.get(name)
            if entry is None or not entry.port_setting.ansible:
                continue
            port = values.get(entry.port_setting.ansible, entry.port)
            bind = self.bind_setting(name)
            address = values.get(bind.ansible) if bind.ansible else None
            if address is None:
                address = bind.default if bind.ansible else (bind.env_default or bind.default)
            out.append(Publish(name, entry.port_setting.ansible, port, bind.ansible or bind.env or bind.id,
                               str(address)))
        return out

    def port_clashes(self, values: Mapping[str, Any], *, gateway: bool | None = None) -> list[str]:
        """No two services of a host publish one port on one address (typed Ansible values): the enabled engines,
        and the gateway where the host runs it (``gateway``; None: as ``values`` say, :func:`runs_gateway`). Two
        addresses overlap when they are the same, or one is the wildcard of the other's family (0.0.0.0, ::), as
        compose-preflight compares them; one port on two distinct addresses (127.0.0.1, 127.0.0.2) is no clash."""
        on = runs_gateway(values) if gateway is None else gateway
        chosen: list[Publish] = []
        for p in self.published(values, gateway=on):
            other = next((c for c in chosen if c.port == p.port and overlap(c.address, p.address)), None)
            if other is None:
                chosen.append(p)
                continue
            if GATEWAY not in (p.service, other.service) and p.address == other.address:
                return [f"port clash: {p.port_setting}={p.port} is {other.port_setting}'s port too; every "
                        "engine needs its own port"]
            if p.address == other.address:
                names = dict.fromkeys((p.bind_setting, other.bind_setting))
                where = f"both on {p.address} ({', '.join(names)})"
            else:
                ip = _ip(p.address)
                wide, narrow = (p, other) if ip is not None and ip.is_unspecified else (other, p)
                where = f"{wide.bind_setting}={wide.address} covers {narrow.bind_setting}={narrow.address}"
            who = "the gateway and every engine need their own" if GATEWAY in (p.service, other.service) \
                else "every engine needs its own"
            return [f"port clash: {p.port_setting}={p.port} is {other.port_setting}'s port too, {where}; {who} "
                    "port (or address)"]
        return []


@dataclass(frozen=True)
class Publish:
    """One port a deployer publishes on a host: the service, its port setting and value, its address setting and
    value (Ansible names where the deployers set them)."""

    service: str
    port_setting: str
    port: Any
    bind_setting: str
    address: str


GATEWAY = "gateway"  # the catalogue's gateway engine (roles/gateway deploys it, not inference_stack)
GATEWAY_GROUP = "gateway_hosts"  # site.yml's lab gateway group: its hosts run the gateway too


def runs_gateway(host: Mapping[str, Any]) -> bool:
    """Whether site.yml runs roles/gateway on ``host`` (its host variables, Ansible names): ``gateway_enabled``
    (its ``| bool``: Ansible's boolean words) or the host is in the lab gateway's group (``group_names``)."""
    enabled = host.get("gateway_enabled", False)
    on = enabled is True or (not isinstance(enabled, bool) and str(enabled).strip().lower() in BOOL_TRUE)
    groups = host.get("group_names")
    return on or (isinstance(groups, list | tuple) and GATEWAY_GROUP in groups)


def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    text = text.strip().strip("[]")
    try:
        return ipaddress.ip_address("127.0.0.1" if text.lower() == "localhost" else text.split("%")[0])
    except ValueError:
        return None


def overlap(a: str, b: str) -> bool:
    """Whether two published addresses take the same port: the same address, or a wildcard (0.0.0.0, ::) and any
    address of its family (Docker publishes 0.0.0.0 and :: apart; compose-preflight compares them so too);
    ``localhost`` is 127.0.0.1."""
    ia, ib = _ip(a), _ip(b)
    if ia is None or ib is None:
        return a == b
    return ia == ib or (ia.version == ib.version and (ia.is_unspecified or ib.is_unspecified))


def _setting(sid: str, raw: Mapping[str, Any]) -> Setting:
    unknown = set(raw) - {"ansible", "env", "role", "type", "default", "env_default", "range", "choices", "format",
                          "required", "elements", "min_length", "derived", "no_log"}
    if unknown or raw.get("type") not in TYPES or raw.get("format", "port") not in FORMATS:
        raise ValueError(f"{PATH.name}: setting {sid}: bad entry {dict(raw)}")
    return Setting(id=sid, type=raw["type"], default=raw.get("default"), ansible=raw.get("ansible"),
                   env=raw.get("env"), role=raw.get("role"),
                   env_default=raw["env_default"] if "env_default" in raw else raw.get("default"),
                   range=Range.parse(raw["range"]) if "range" in raw else None,
                   choices=tuple(raw["choices"]) if "choices" in raw else None, format=raw.get("format"),
                   required=bool(raw.get("required", False)), elements=raw.get("elements"),
                   min_length=int(raw.get("min_length", 0)), derived=tuple(raw.get("derived", ())),
                   no_log=bool(raw.get("no_log", False)))


def parse(doc: Mapping[str, Any]) -> Catalogue:
    settings = {sid: _setting(sid, raw) for sid, raw in doc["settings"].items()}
    engines = {}
    for name, raw in doc["engines"].items():
        opt = {k: settings[raw[k]] if raw.get(k) else None for k in ("model_path_setting", "api_key_file_setting")}
        engines[name] = EngineEntry(name=name, title=raw["title"], port=int(raw["port"]),
                                    deployed=bool(raw.get("deployed", False)),
                                    port_setting=settings[raw["port_setting"]],
                                    model_setting=settings[raw["model_setting"]],
                                    companions=tuple(raw.get("companions", ())),
                                    model_check=raw.get("model_check"), **opt)
    return Catalogue(engines=engines, settings=settings)


@cache
def load() -> Catalogue:
    """The catalogue shipped beside this module."""
    return parse(yaml.safe_load(PATH.read_text(encoding="utf-8")))


# -- the one verify command line (roles/verify and pyinfra/deploy.py run these) --------------------------------------
def endpoint_args(address: str, engines: Sequence[str], ports: Mapping[str, Any], models: Mapping[str, Any],
                  key_files: Mapping[str, str] | None = None, addresses: Mapping[str, str] | None = None) -> list[str]:
    """``ENGINE=URL`` per engine (at ``addresses[ENGINE]``, else ``address``: :func:`verify_addresses`),
    ``--model ENGINE=NAME`` per engine, ``--api-key-file ENGINE=FILE`` per keyed one."""
    def host(e: str) -> str:
        a = (addresses or {}).get(e) or address
        return f"[{a}]" if ":" in a and not a.startswith("[") else a

    out = [f"{e}=http://{host(e)}:{int(ports[e])}" for e in engines]
    for e in engines:
        out += ["--model", f"{e}={models[e]}"]
    for e, f in (key_files or {}).items():
        if e in engines and f:
            out += ["--api-key-file", f"{e}={f}"]
    return out


def gateway_url(address: str, port: Any, *, tls: bool = False) -> str:
    """The gateway's URL at ``address`` (``https`` with the lab's certificate, ``gateway_tls_*``)."""
    host = f"[{address}]" if ":" in address and not address.startswith("[") else address
    return f"{'https' if tls else 'http'}://{host}:{int(port)}"


def gateway_args(gateway: Mapping[str, Any] | None) -> list[str]:
    """``gateway=URL --model gateway=NAME --api-key-file gateway=FILE`` for ``gateway`` (``url``, ``model``,
    ``key_file``: the controller's private copy of the master key; the key itself is never in argv)."""
    if not gateway:
        return []
    out = [f"{GATEWAY}={gateway['url']}", "--model", f"{GATEWAY}={gateway['model']}"]
    if gateway.get("key_file"):
        out += ["--api-key-file", f"{GATEWAY}={gateway['key_file']}"]
    return out


def verify_commands(*, bin_dir: str, address: str, engines: Sequence[str], ports: Mapping[str, Any],
                    models: Mapping[str, Any], key_files: Mapping[str, str] | None, gpu: bool,
                    reports: str, wait: int, request_timeout: int, smoke_bench: bool, num_prompts: int,
                    concurrency: int, output_len: int, gateway: Mapping[str, Any] | None = None,
                    ca_bundle: str = "", addresses: Mapping[str, str] | None = None) -> dict[str, list[str]]:
    """The commands both deployers run on the controller after a deploy: ``healthcheck`` (one run for every engine,
    and the host's gateway where it runs one (``gateway``: :func:`gateway_args`; its routes, key refusal and
    upstream states), JSON on stdout for ``<reports>/healthcheck.json``) and, with ``smoke_bench``,
    ``smoke-bench`` writing ``bench.json``, ``bench.png`` and ``bench.html`` under ``reports`` (the engines
    themselves). A lab gateway's own run: no engines, ``gateway`` only, no smoke-bench. ``ca_bundle``: a PEM file
    healthcheck trusts beside the system store (the lab's CA, for a gateway with TLS). ``addresses``: where each
    engine is reached when not at ``address`` (:func:`verify_addresses`). ``request_timeout`` is both tools'
    ``--timeout`` (smoke-bench: the wait for each chunk, the first token included)."""
    # an engine on loopback of a host reached elsewhere ("" in addresses: :func:`verify_addresses`) is checked
    # through the host's gateway (a real completion per route), not directly
    engines = [e for e in engines if (addresses or {}).get(e) != ""]
    eps = endpoint_args(address, engines, ports, models, key_files, addresses)
    tls = ["--ca-bundle", ca_bundle] if ca_bundle else []
    gw = gateway_args(gateway)
    # every NAME=URL before the first option: healthcheck's positionals do not follow its options (argparse)
    first = next((i for i, a in enumerate(eps) if a.startswith("--")), len(eps))
    hc_eps = [*eps[:first], *gw[:1], *eps[first:], *gw[1:]]
    out = {"healthcheck": [f"{bin_dir}/healthcheck", *hc_eps, "--wait", str(int(wait)),
                           "--timeout", str(int(request_timeout)), "--expect-gpu" if gpu else "--no-expect-gpu",
                           *tls, "--json", "--no-diagnose"]}
    if smoke_bench and engines:
        out["smoke-bench"] = [f"{bin_dir}/smoke-bench", *eps, "--num-prompts", str(int(num_prompts)),
                              "--concurrency", str(int(concurrency)), "--output-len", str(int(output_len)),
                              "--timeout", str(int(request_timeout)), "--json", f"{reports}/bench.json",
                              "--plot", f"{reports}/bench.png", "--html", f"{reports}/bench.html"]
    return out


def _loopback(address: str) -> bool:
    ip = _ip(address)
    return ip is not None and ip.is_loopback


def reach_address(bind: str, address: str) -> str:
    """Where the controller reaches a service published on ``bind`` of a host it reaches at ``address`` (its
    ``ansible_host``): the bind address itself where it is one address (the host's lab address, or a loopback
    address when the host is the controller's loopback too), else ``address`` (a wildcard: every address of the
    host; loopback on a host reached elsewhere: nowhere, :func:`unreachable` says so)."""
    ip = _ip(bind)
    if ip is None:
        return bind.strip() or address  # a host name the service is published on
    if ip.is_unspecified or (ip.is_loopback and not _loopback(address)):
        return address
    return bind


def _through_gateway(published: Sequence[Any], address: str, *, gateway: bool) -> set[str]:
    """The engines verify checks through the host's own gateway rather than directly: published on loopback only
    on a host the controller reaches elsewhere, while the host's gateway (``gateway``) is published beyond
    loopback (its healthcheck row makes a real completion through every route, one per engine's model)."""
    if not gateway or _loopback(address):
        return set()
    gw = [p for p in published if p.service == GATEWAY]
    if not gw or any(_loopback(p.address) for p in gw):
        return set()
    return {p.service for p in published if p.service != GATEWAY and _loopback(p.address)}


def verify_addresses(values: Mapping[str, Any], address: str, *, gateway: bool = False) -> dict[str, str]:
    """Per service the host publishes (typed Ansible ``values``; the gateway where ``gateway``), where verify
    reaches it from the controller (:func:`reach_address`); "" for an engine it checks through the host's gateway
    instead (:func:`_through_gateway`: verify_commands leaves it out of the direct endpoints)."""
    published = load().published(values, gateway=gateway)
    via = _through_gateway(published, address, gateway=gateway)
    return {p.service: "" if p.service in via else reach_address(p.address, address) for p in published}


def unreachable(values: Mapping[str, Any], address: str, *, gateway: bool = False, lab_gateway: bool = False,
                host: str = "") -> list[str]:
    """Why the controller cannot verify what a host publishes (typed Ansible ``values``), reached at ``address``
    (its ``ansible_host``): one line per service published on loopback only while the host is not loopback to the
    controller. ``gateway``: the host runs its own gateway (verified beside its engines); ``lab_gateway``: the
    host is the lab's gateway (only the gateway is verified)."""
    if _loopback(address):
        return []
    who = f"{host}: " if host else ""
    out = []
    published = load().published(values, gateway=gateway or lab_gateway)
    via = _through_gateway(published, address, gateway=gateway and not lab_gateway)
    for p in published:
        if lab_gateway and p.service != GATEWAY:
            continue
        if not _loopback(p.address) or p.service in via:
            continue
        if p.service == GATEWAY:
            fix = (f"publish the gateway beyond loopback ({p.bind_setting}, it always requires its master key), "
                   "or skip verify (--skip-tags verify)")
        else:
            fix = ("run the host's own gateway beyond loopback (gateway_enabled: true, gateway_bind_address): verify "
                   "then checks every engine through it, or skip verify (--skip-tags verify)")
        out.append(f"{who}verify runs on the controller and reaches this host at {address}, but {p.service} is "
                   f"published on {p.address}:{p.port} only ({p.bind_setting}={p.address}): {fix}")
    return out
