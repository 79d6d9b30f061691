"""The pyinfra deployer's settings: the SAME files the Ansible roles read, resolved and validated the same way.

Layers, lowest first (Ansible's precedence for the same sources):

1. every role's ``defaults/main.yml`` (roles in site.yml's order)
2. the lab settings, ``inventory/group_vars/gpu_hosts/`` (a host's own group's: ``pyinfra/inventory.py`` names
   ``group_vars/gateway_hosts/`` for a host only in gateway_hosts, which Ansible gives no gpu_hosts layer; a folder
   that does not exist is no layer) as Ansible reads them (the one inventory reader,
   ``healthchecks.endpoints.inventory.read_inventory``): an encrypted ``vault.yml`` is decrypted with the vault
   password file (``--data gik_vault_password_file=FILE``, Ansible's ``ANSIBLE_VAULT_PASSWORD_FILE`` or
   ansible.cfg), or the run stops naming the missing password. Secrets may also come from files
   (``hf_secret_token_file``, ``hf_secret_<engine>_api_key_file``: vllm, llamacpp), which win over the vault's values.
3. a settings file (YAML, like host_vars): ``--data gik_settings=FILE`` or ``GIK_SETTINGS=FILE``
4. per-host data (``pyinfra/inventory.py`` from the Ansible inventory's host entries) and ``--data key=value``
5. the roles' ``vars/main.yml`` (derived values such as ``inference_stack_overlay``; Ansible ranks role vars above
   inventory too)

The few Jinja expressions in those files are resolved with Ansible's filters (``bool``, ``default``...), values are
validated with Ansible's own ``ArgumentSpecValidator`` against every role's ``meta/argument_specs.yml`` plus the
stack catalogue's types and ranges (``healthchecks/stack.yml``, as site.yml's first play checks them), and the
``.env`` and ``daemon.json`` are rendered from the roles' own templates with the template module's Jinja options, so
they are byte-identical to Ansible's.
Engine names, ports and setting names come from the engine catalogue (``healthchecks.engines``).
"""

from __future__ import annotations

import configparser
import copy
import datetime
import functools
import json
import os
import pwd
import socket
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2
import jinja2.meta
import jinja2.nativetypes
import yaml

from healthchecks import exposure, stack
from healthchecks.endpoints.inventory import ansible_bool, read_inventory
from healthchecks.engines import CATALOGUE
from healthchecks.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent
ROLES_DIR = ROOT / "roles"
GROUP_VARS = ROOT / "inventory" / "group_vars" / "gpu_hosts"
GROUP_VARS_ALL = ROOT / "inventory" / "group_vars" / "all"
ENV_TEMPLATE = ROLES_DIR / "inference_stack" / "templates" / "env.j2"
APT_PROXY_FILE = "/etc/apt/apt.conf.d/95gik-proxy"
DAEMON_TEMPLATE = ROLES_DIR / "docker" / "templates" / "daemon.json.j2"
# Engines the kit deploys, in the catalogue's order: names, ports and setting names come from there
DEPLOYED = {name: spec for name, spec in CATALOGUE.items() if spec.deployed}
# Settings only the pyinfra deployer has: secrets from files on the controller (they win over the vault's values)
PYINFRA_SPEC: dict[str, dict[str, Any]] = {
    "hf_secret_token_file": {"type": "path", "description": "File holding the HF token (empty: no token)."},
    "hf_secret_vllm_api_key_file": {"type": "path", "description": "File holding the vLLM API key (empty: none)."},
    "hf_secret_llamacpp_api_key_file": {"type": "path",
                                        "description": "File holding the llama.cpp API key (empty: none)."},
    # site.yml runs roles/gateway on a gpu_hosts host where gateway_enabled (its `when:`, no role default)
    "gateway_enabled": {"type": "bool", "description": "Run the gateway in front of this host's engines."},
    "gateway_master_key_src": {"type": "path",
                               "description": "File holding the gateway's master key (wins over the vault's)."},
}
# The secret files hf_secret writes: file name -> (pyinfra's file setting, the vault variable)
SECRET_SOURCES = {"hf_token": ("hf_secret_token_file", "vault_hf_token"),
                  "vllm_api_key": ("hf_secret_vllm_api_key_file", "vault_vllm_api_key"),
                  "llamacpp_api_key": ("hf_secret_llamacpp_api_key_file", "vault_llamacpp_api_key")}
SECRET_KEYS = ("hf_secret_token", "hf_secret_vllm_api_key", "vault_hf_token", "vault_vllm_api_key",
               "hf_secret_llamacpp_api_key", "vault_llamacpp_api_key",
               "gateway_master_key", "vault_gateway_master_key")
GATEWAY_ROLE = ROLES_DIR / "gateway"
GATEWAY_ENV_TEMPLATE = GATEWAY_ROLE / "templates" / "gateway.env.j2"


class SettingsError(Exception):
    """A bad or missing setting; the message names it and is safe to print (no secret values)."""


# -- Ansible's own filters and tests (ansible.builtin), so the roles' expressions evaluate as in Ansible ----------
_TRUE = {"yes", "on", "true", "1"}
_FALSE = {"no", "off", "false", "0"}


def bool_filter(value: object) -> bool:
    """Ansible's Jinja ``bool`` filter (ansible.plugins.filter.core.to_bool), for the roles' own expressions only.
    Setting values are read by the one Ansible-boolean reader (healthchecks.endpoints.inventory.ansible_bool)."""
    check: object = value.lower() if isinstance(value, str) else str(value).lower() if isinstance(value, int) else value
    if check in _TRUE:
        return True
    if check in _FALSE:
        return False
    return check == 1


def _lookup(name: str, *terms: str, default: Any = None, rstrip: Any = True, **_: Any) -> Any:
    if name in ("env", "ansible.builtin.env"):
        values = [os.environ.get(t, default if default is not None else "") for t in terms]
        return values[0] if len(values) == 1 else ",".join(values)
    if name in ("file", "ansible.builtin.file"):  # a controller file's text, trailing whitespace stripped (rstrip)
        try:
            texts = [Path(t).read_text().rstrip() if bool_filter(rstrip) else Path(t).read_text() for t in terms]
        except OSError as e:
            raise SettingsError(f"lookup('file'): cannot read {e.filename} ({e.strerror})") from None
        return texts[0] if len(texts) == 1 else ",".join(texts)
    raise SettingsError(f"lookup({name!r}) is not supported by the pyinfra deployer")


def _ansible_plugins() -> tuple[dict[str, Any], dict[str, Any]]:
    from ansible.plugins.filter import core, mathstuff, urls, urlsplit
    from ansible.plugins.test import core as test_core
    from ansible.plugins.test import files as test_files
    from ansible.plugins.test import mathstuff as test_math
    from ansible.plugins.test import uri as test_uri

    filters: dict[str, Any] = {}
    for fm in (core, mathstuff, urls, urlsplit):
        filters.update(fm.FilterModule().filters())
    tests: dict[str, Any] = {}
    for tm in (test_core, test_files, test_math, test_uri):
        tests.update(tm.TestModule().tests())
    # Jinja's own default/defined/map/select... where both exist: Ansible's replacements work on its internal
    # markers, the semantics are Jinja's
    builtin = jinja2.Environment()
    filters = {k: v for k, v in filters.items() if k not in builtin.filters}
    tests = {k: v for k, v in tests.items() if k not in builtin.tests}
    # FQCN spellings as the roles may write them
    filters.update({f"ansible.builtin.{k}": v for k, v in list(filters.items())})
    tests.update({f"ansible.builtin.{k}": v for k, v in list(tests.items())})
    filters["bool"] = filters["ansible.builtin.bool"] = bool_filter  # without Ansible's deprecation display
    return filters, tests


def _quiet_import() -> tuple[dict[str, Any], dict[str, Any]]:
    """Import Ansible's plugins. Under pyinfra's gevent, Ansible's import-time getaddrinfo probe makes gevent print
    a harmless traceback from its thread pool; keep that off the user's screen."""
    try:
        import gevent
    except ImportError:
        return _ansible_plugins()
    hub = gevent.get_hub()
    saved = hub.NOT_ERROR
    hub.NOT_ERROR = (*saved, OSError)
    try:
        from ansible.module_utils.common import arg_spec  # noqa: F401
        return _ansible_plugins()
    finally:
        hub.NOT_ERROR = saved


FILTERS, TESTS = _quiet_import()


@functools.lru_cache(maxsize=4)
def _role_filters(path: Path) -> dict[str, Any]:
    """The filters of one of the roles' filter plugin files (its FilterModule), loaded from the kit's checkout."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(f"gik_{path.stem}_filters", path)
    if spec is None or spec.loader is None:  # pragma: no cover - the kit's own file
        raise SettingsError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return dict(module.FilterModule().filters())


def _key_filters() -> dict[str, Any]:
    """roles/preflight/filter_plugins/gik_exposure.py's filters (gik_key_text, gik_holds_key...): the roles' vars
    and templates read keys through them (healthchecks/exposure.py's one rule for what a key is)."""
    return _role_filters(ROLES_DIR / "preflight" / "filter_plugins" / "gik_exposure.py")


def _env(native: bool, **options: Any) -> jinja2.Environment:
    cls = jinja2.nativetypes.NativeEnvironment if native else jinja2.Environment
    env = cls(undefined=jinja2.StrictUndefined, **options)
    env.filters.update(FILTERS)
    env.filters.update(_key_filters())
    env.tests.update(TESTS)
    # role_path/../.. is the kit's checkout for every role (the roles anchor controller paths there)
    env.globals.update(lookup=_lookup, playbook_dir=str(ROOT), role_path=str(ROOT / "roles" / "verify"))
    return env


# -- reading the files ------------------------------------------------------------------------------------------
def site_roles() -> list[str]:
    """Roles in site.yml's order (the play Ansible runs): their defaults, specs and vars are the settings."""
    plays = yaml.safe_load((ROOT / "site.yml").read_text())
    names: list[str] = []
    for play in plays:
        for role in play.get("roles", []):
            names.append(role["role"] if isinstance(role, dict) else role)
    return names


def _yaml_file(path: Path) -> dict[str, Any]:
    text = path.read_text()
    if text.startswith("$ANSIBLE_VAULT"):
        raise SettingsError(f"{path}: encrypted with Ansible Vault; only the inventory's group_vars are decrypted "
                            "(keep secrets in inventory/group_vars/all/vault.yml)")
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise SettingsError(f"{path}: not valid YAML ({str(e).splitlines()[0]})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise SettingsError(f"{path}: expected a mapping of settings, got {type(data).__name__}")
    return data


def role_file(role: str, *parts: str) -> dict[str, Any]:
    path = ROLES_DIR.joinpath(role, *parts)
    return _yaml_file(path) if path.is_file() else {}


def argument_specs() -> dict[str, dict[str, Any]]:
    """Every role's main entry point options (the union; later roles refine earlier ones), plus pyinfra's own."""
    spec: dict[str, dict[str, Any]] = {}
    for role in site_roles():
        options = (role_file(role, "meta", "argument_specs.yml").get("argument_specs", {})
                   .get("main", {}).get("options", {}))
        for name, opt in options.items():
            spec[name] = {**spec.get(name, {}), **opt}
    return {**spec, **PYINFRA_SPEC}


def group_vars_layer(folder: Path = GROUP_VARS, vault_password_file: str | None = None) -> dict[str, Any]:
    """The lab settings of ``group_vars/gpu_hosts`` (a folder or one file) as Ansible reads them: through the one
    inventory reader (``ansible-inventory``), an encrypted ``vault.yml`` decrypted with the vault password file.
    Read once per content (the deploy loads settings more than once)."""
    folder = Path(folder)
    if not folder.exists():
        return {}
    files = sorted(folder.rglob("*")) if folder.is_dir() else [folder]
    stamp = tuple((str(f), f.stat().st_mtime_ns, f.stat().st_size) for f in files if f.is_file())
    return copy.deepcopy(_group_vars(str(folder.resolve()), vault_password_file or None, stamp))


@functools.lru_cache(maxsize=16)
def _group_vars(folder: str, vault_password_file: str | None, _stamp: object) -> dict[str, Any]:
    source = Path(folder)
    with tempfile.TemporaryDirectory(prefix="gik-group-vars-") as tmp:
        inv = Path(tmp, "hosts.yml")
        inv.write_text("gpu_hosts:\n  hosts:\n    gik-settings-layer: {}\n")
        Path(tmp, "group_vars").mkdir()
        link = Path(tmp, "group_vars", "gpu_hosts" + ("" if source.is_dir() else source.suffix or ".yml"))
        link.symlink_to(source)
        try:
            hosts = read_inventory(inv, host="gik-settings-layer", vault_password_file=vault_password_file)
        except ConfigError as e:
            if "no vault password" in str(e):
                raise SettingsError(f"{source}: holds a file encrypted with Ansible Vault and no vault password was "
                                    "given: set ANSIBLE_VAULT_PASSWORD_FILE or --data gik_vault_password_file=FILE "
                                    "(a file holding the password, as ansible-playbook --vault-password-file)"
                                    ) from None
            raise SettingsError(str(e).replace(f"could not read {inv}", f"could not read {source}")) from None
    return dict(hosts[0].vars) if hosts else {}


# Derived values the deployer uses besides the specs' options and the templates' variables
NEEDED = ("inference_stack_services", "inference_stack_compose_files", "inference_stack_overlay",
          "container_toolkit_daemon_json_owner", "docker_json_owner", "docker_nvidia_runtime",
          "docker_conflicting_packages", "docker_apt_key_url", "docker_apt_keyring", "docker_apt_uri",
          "docker_apt_sources", "docker_apt_legacy_list", "docker_deb_arch", "docker_dnf_baseurl",
          "docker_dnf_key_url", "inference_stack_env_has_secret", "proxy_has_credentials", "proxy_apt_direct_hosts")


def template_variables(template: Path) -> set[str]:
    return set(jinja2.meta.find_undeclared_variables(_env(native=False).parse(template.read_text())))


def setting_name(key: str, prefixes: Iterable[str]) -> bool:
    return any(key.startswith(p + "_") for p in prefixes) or key.startswith(("vault_", "gik_"))


# -- resolving --------------------------------------------------------------------------------------------------
class _Resolver:
    """Resolves ``{{ ... }}`` values on demand, each variable once, like Ansible's lazy templar."""

    def __init__(self, raw: Mapping[str, Any]) -> None:
        self.raw = dict(raw)
        self.done: dict[str, Any] = {}
        self.env = _env(native=True)
        self._stack: list[str] = []

    def get(self, key: str) -> Any:
        if key in self.done:
            return self.done[key]
        if key not in self.raw:
            raise KeyError(key)
        if key in self._stack:
            raise SettingsError(f"{key}: its value refers to itself ({' -> '.join([*self._stack, key])})")
        self._stack.append(key)
        try:
            value = self._resolve(key, self.raw[key])
        finally:
            self._stack.pop()
        self.done[key] = value
        return value

    def _resolve(self, key: str, value: Any) -> Any:
        if isinstance(value, str) and ("{{" in value or "{%" in value):
            try:
                names = jinja2.meta.find_undeclared_variables(self.env.parse(value))
                ctx = {n: self.get(n) for n in names if n in self.raw}
                return self.env.from_string(value).render(ctx)
            except jinja2.UndefinedError as e:
                raise SettingsError(f"{key}: {e.message}") from None
            except jinja2.TemplateError as e:
                raise SettingsError(f"{key}: cannot resolve {value!r} ({e})") from None
        if isinstance(value, list):
            return [self._resolve(key, v) for v in value]
        if isinstance(value, dict):
            return {k: self._resolve(key, v) for k, v in value.items()}
        return value


# -- the result ---------------------------------------------------------------------------------------------------
@dataclass
class Settings:
    """Resolved settings of one host. ``raw``: values as Ansible's templates see them (for rendering);
    ``value(name)``: validated and converted (for deciding what to do)."""

    raw: dict[str, Any]
    validated: dict[str, Any]
    sources: dict[str, str] = field(default_factory=dict)

    def value(self, name: str) -> Any:
        return self.validated[name] if self.validated.get(name) is not None else self.raw.get(name)

    @property
    def engines(self) -> list[str]:
        return list(self.value("inference_stack_engines"))

    @property
    def gpu(self) -> bool:
        return bool(self.value("inference_stack_gpu"))

    def port(self, engine: str) -> int:
        return int(self.value(DEPLOYED[engine].ansible_port or ""))

    def model(self, engine: str) -> str:
        return str(self.value(DEPLOYED[engine].ansible_model or ""))

    @property
    def services(self) -> list[str]:
        return [str(s) for s in self.raw["inference_stack_services"]]

    @property
    def compose_files(self) -> list[str]:
        return [str(f) for f in self.raw["inference_stack_compose_files"]]

    @property
    def stack_dir(self) -> str:
        return str(self.value("inference_stack_dir"))

    @property
    def secret_dir(self) -> str:
        return str(self.value("hf_secret_dir"))


def _read_secret(path_value: Any, setting: str) -> str | None:
    if path_value in (None, ""):
        return None
    path = Path(os.path.expandvars(os.path.expanduser(str(path_value))))
    try:
        return path.read_text().rstrip("\r\n")
    except OSError as e:
        raise SettingsError(f"{setting}: cannot read {path} ({e.strerror})") from None


def load(overrides: Mapping[str, Any] | None = None, *, settings_file: str | os.PathLike[str] | None = None,
         group_vars: str | os.PathLike[str] | None = None, workstation: Mapping[str, Any] | None = None,
         facts: Mapping[str, Any] | None = None, vault_password_file: str | None = None,
         groups: Iterable[str] | None = None, files_salt: str = "") -> Settings:
    """Resolve and validate one host's settings. ``overrides``: host data and ``--data`` (highest user layer).
    ``workstation``: defaults for ``@local`` that apply only where no user layer set the value. ``facts``: the
    host's ``ansible_facts`` subset the roles' vars use (distribution, distribution_release, architecture...).
    ``vault_password_file``: for an encrypted group_vars file (default: Ansible's ANSIBLE_VAULT_PASSWORD_FILE).
    ``groups``: the host's inventory groups (Ansible's group_names): where it runs the gateway (see
    :func:`runs_gateway`), the gateway's port joins the engines' in the port clash check. ``files_salt``: the host's
    salt of the secret files' digests (roles/inference_stack's files_digest_salt, which deploy.py reads or draws),
    for the .env's and gateway.env's ``<SERVICE>_FILES_DIGEST``."""
    roles = site_roles()
    layers: list[tuple[str, dict[str, Any]]] = []
    for role in roles:
        layers.append((f"roles/{role}/defaults", role_file(role, "defaults", "main.yml")))
    vpf = vault_password_file or (overrides or {}).get("gik_vault_password_file") or os.environ.get(
        "ANSIBLE_VAULT_PASSWORD_FILE")
    if not group_vars:  # the kit's own inventory: its group_vars/all (the vault, as Ansible reads it) comes first
        layers.append(("group_vars", group_vars_layer(GROUP_VARS_ALL, str(vpf) if vpf else None)))
    layers.append(("group_vars", group_vars_layer(Path(group_vars) if group_vars else GROUP_VARS,
                                                  str(vpf) if vpf else None)))
    if settings_file:
        path = Path(os.path.expanduser(str(settings_file)))
        if not path.is_file():
            raise SettingsError(f"gik_settings: no such settings file {path}")
        layers.append((str(path), _yaml_file(path)))
    layers.append(("host data", dict(overrides or {})))

    raw: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for name, layer in layers:
        for k, v in layer.items():
            raw[k] = v
            sources[k] = name
    user_set = {k for k, s in sources.items() if s not in ("group_vars",) and not s.startswith("roles/")}
    for k, v in (workstation or {}).items():
        if k not in user_set:
            raw[k] = v
            sources[k] = "workstation"
    # the secrets: a file on the controller (hf_secret_*_file), else the vault's value (hf_secret's defaults)
    token = _read_secret(raw.get("hf_secret_token_file"), "hf_secret_token_file")
    raw["hf_secret_token"] = token if token is not None else raw.get("vault_hf_token", "")
    # hf_secret's keys: hf_secret_<engine>_api_key (each deployed engine the catalogue gives a key file), from the
    # file or the vault
    for engine in [e for e, eng in stack.load().engines.items() if eng.deployed and eng.api_key_file_setting]:
        key = _read_secret(raw.get(f"hf_secret_{engine}_api_key_file"), f"hf_secret_{engine}_api_key_file")
        raw[f"hf_secret_{engine}_api_key"] = key if key is not None else raw.get(f"vault_{engine}_api_key", "")
    master_key = _read_secret(raw.get("gateway_master_key_src"), "gateway_master_key_src")
    if master_key is not None:
        raw["gateway_master_key"] = master_key
    for name, (file_setting, vault_var) in SECRET_SOURCES.items():
        given = raw.get(file_setting) not in (None, "") or vault_var in raw
        sources[f"secret:{name}"] = (file_setting if raw.get(file_setting) not in (None, "") else vault_var) \
            if given else ""
    spec = argument_specs()
    needed = (set(spec) | template_variables(ENV_TEMPLATE) | template_variables(DAEMON_TEMPLATE) | set(NEEDED)
              | set(role_file("verify", "defaults", "main.yml"))
              # the engines' keys the gateway sends (roles/gateway: hf_secret_<engine>_api_key, else the vault's)
              | {f"{p}_{e}_api_key" for e in CATALOGUE for p in ("hf_secret", "vault")})
    resolver = _Resolver(raw)
    resolved = {k: resolver.get(k) for k in raw if k in needed}
    validated = validate(resolved, spec, gateway=runs_gateway(resolved, groups))
    # Role vars rank above the inventory in Ansible too; they derive from the validated values (a list of
    # engines given as "vllm,llamacpp" is a list by now)
    role_vars: dict[str, Any] = {}
    for role in roles:
        role_vars.update(role_file(role, "vars", "main.yml"))
    derived = _Resolver({**raw, **{k: v for k, v in validated.items() if v is not None}, **role_vars,
                         "ansible_facts": dict(facts or {}), "inference_stack_files_salt": files_salt})
    for k in role_vars:
        if k in needed:
            try:
                resolved[k] = derived.get(k)
            except SettingsError:
                if k in template_variables(ENV_TEMPLATE) | template_variables(DAEMON_TEMPLATE):
                    raise
                continue  # host facts it needs are not known here (rendering only): not used
            sources[k] = "role vars"
    resolved["inference_stack_files_salt"] = files_salt
    return Settings(raw=resolved, validated=validated, sources=sources)


def runs_gateway(values: Mapping[str, Any], groups: Iterable[str] | None = None) -> bool | None:
    """Whether the host publishes the gateway's port beside its engines' (healthchecks/stack.py ``runs_gateway``,
    as the Ansible settings check reads it from ``gateway_enabled`` and ``group_names``): ``gateway_enabled``, or a
    host of gateway_hosts that is also in gpu_hosts. A host only in gateway_hosts runs no engines, so nothing can
    clash with its gateway there (Ansible's settings check does not run on it). None without ``groups``: as
    ``values`` say (``gateway_enabled``)."""
    if groups is None:
        return None
    names = list(groups)
    if LAB_GATEWAY_GROUP in names and LAB_UPSTREAM_GROUP not in names:
        return False
    return stack.runs_gateway({**{k: values[k] for k in ("gateway_enabled",) if k in values}, "group_names": names})


def validate(values: Mapping[str, Any], spec: Mapping[str, dict[str, Any]] | None = None, *,
             gateway: bool | None = None) -> dict[str, Any]:
    """Ansible's argument-spec validation for every role, then the stack catalogue's types and ranges. Raises
    SettingsError with every problem, each naming its setting. ``gateway``: whether the host runs the gateway beside
    its engines (its port joins the clash check; None: as ``gateway_enabled`` says)."""
    from ansible.module_utils.common.arg_spec import ArgumentSpecValidator

    spec = dict(spec or argument_specs())
    params = {k: v for k, v in values.items() if k in spec}
    result = ArgumentSpecValidator(spec).validate(params)
    errors = [m for m in result.error_messages if "Unsupported parameters" not in m]
    if errors:
        raise SettingsError("; ".join(_no_secrets(m) for m in errors))
    out = {**dict(values), **{k: v for k, v in result.validated_parameters.items() if k in params}}
    # the stack's settings: converted by the catalogue's types (text from --data) and range-checked, the engines'
    # ports apart; the same check (healthchecks/stack.py) the first play of site.yml runs
    converted, problems = stack.load().convert_all({k: values[k] for k in params}, gateway=gateway)
    if problems:
        raise SettingsError("; ".join(_no_secrets(m) for m in problems))
    return {**out, **converted}


def _no_secrets(message: str) -> str:
    return next((f"{k}: invalid value (not shown)" for k in SECRET_KEYS
                 if k in message.replace(f"{k}_src", "")), message)


# -- rendering the roles' templates ---------------------------------------------------------------------------------
def _ansible_managed(template: Path) -> str:
    """Ansible's ``ansible_managed`` for a template: DEFAULT_MANAGED_STR from ansible.cfg (the repo's, where
    ansible-playbook runs) formatted and strftime'd as ansible's template vars do."""
    managed = "Ansible managed"
    cfg_path = os.environ.get("ANSIBLE_CONFIG") or str(ROOT / "ansible.cfg")
    parser = configparser.ConfigParser(interpolation=None)
    if Path(cfg_path).is_file():
        parser.read(cfg_path)
        managed = parser.get("defaults", "ansible_managed", fallback=managed)
    if "{" not in managed and "%" not in managed:
        return managed
    st = template.stat()
    text = managed.format(host="{{ template_host }}", uid="{{ template_uid }}", file="{{ template_path }}")
    text = time.strftime(text, time.localtime(st.st_mtime))
    try:
        uid = pwd.getpwuid(st.st_uid).pw_name
    except KeyError:
        uid = str(st.st_uid)
    return jinja2.Environment().from_string(text).render(
        template_host=socket.gethostname(), template_uid=uid, template_path=str(template),
        template_run_date=datetime.datetime.now())


def render_template(template: Path, variables: Mapping[str, Any]) -> str:
    """Render a role template as ansible.builtin.template does (trim_blocks, trailing newlines kept)."""
    source = template.read_text()
    env = _env(native=False, trim_blocks=True, lstrip_blocks=False, keep_trailing_newline=False)
    ctx = {"ansible_managed": _ansible_managed(template), **variables}
    try:
        out = env.from_string(source).render(ctx)
    except jinja2.UndefinedError as e:
        raise SettingsError(f"{template.relative_to(ROOT)}: {e.message}") from None
    missing = (len(source) - len(source.rstrip("\n"))) - (len(out) - len(out.rstrip("\n")))
    return out + "\n" * max(missing, 0)


def render_env(settings: Settings) -> str:
    return render_template(ENV_TEMPLATE, settings.raw)


def render_daemon_json(settings: Settings, current: str | None = None) -> str:
    """The docker role's daemon.json. ``current``: the host's file; where nvidia-ctk owns the runtimes
    (container_toolkit_daemon_json_owner: nvidia_ctk) its runtime entries are kept, as the role keeps them."""
    kept: dict[str, Any] = {}
    if str(settings.raw.get("docker_json_owner", "docker_role")) == "nvidia_ctk" and current:
        try:
            doc = json.loads(current)
        except json.JSONDecodeError:
            doc = {}
        kept = {k: doc[k] for k in ("runtimes", "default-runtime") if isinstance(doc, dict) and k in doc}
    return render_template(DAEMON_TEMPLATE, {**settings.raw, "docker_kept_from_file": kept})


def _role_copy_content(role: str, dest: str) -> str:
    """The ``content:`` of the role task that copies to ``dest`` (its text is rendered here, never restated)."""
    tasks = yaml.safe_load((ROLES_DIR / role / "tasks" / "main.yml").read_text()) or []
    for path in sorted((ROLES_DIR / role / "tasks").glob("*.yml")):
        tasks += yaml.safe_load(path.read_text()) or [] if path.name != "main.yml" else []
    for task in tasks:
        copy_args = task.get("ansible.builtin.copy") if isinstance(task, dict) else None
        if isinstance(copy_args, dict) and copy_args.get("dest") == dest and "content" in copy_args:
            return str(copy_args["content"])
    raise SettingsError(f"roles/{role}/tasks: no copy task writes {dest}")


def _render_content(text: str, variables: Mapping[str, Any]) -> str:
    """A task's templated ``content:`` as Ansible's templar renders it (trim_blocks, trailing newline kept)."""
    env = _env(native=False, trim_blocks=True, keep_trailing_newline=True)
    return env.from_string(text).render(dict(variables))


def render_apt_proxy(settings: Settings) -> str:
    """The proxy role's /etc/apt/apt.conf.d/95gik-proxy (apt through the proxy; the no_proxy hosts DIRECT)."""
    return _render_content(_role_copy_content("proxy", APT_PROXY_FILE), settings.raw)


def render_docker_sources(settings: Settings, facts: Mapping[str, Any]) -> str:
    """The docker role's deb822 docker.sources (Docker's install guide's form)."""
    dest = str(settings.raw.get("docker_apt_sources") or "/etc/apt/sources.list.d/docker.sources")
    text = _role_copy_content("docker", "{{ docker_apt_sources }}")
    return _render_content(text, {**settings.raw, "docker_apt_sources": dest, "ansible_facts": dict(facts)})


def manages_daemon_json(settings: Settings) -> bool:
    return ansible_bool(settings.value("docker_manage_daemon_json"), "docker_manage_daemon_json")


# -- the gateway (roles/gateway): its config, compose settings and secrets, from the role's own filters and template
@dataclass
class Gateway:
    """What roles/gateway writes on a host where ``gateway_enabled`` (gateway_mode host): ``config`` (gateway/
    config.yaml), ``env`` (gateway.env), the secret files by name (the master key, and the key of every keyed engine
    the gateway fronts, empty where the engine has none) and the TLS files (secret name -> the controller's file)."""

    config: str
    env: str
    secrets: dict[str, str]
    tls: dict[str, str]
    env_secret: bool = False  # a proxy URL with user:password@ in env: a root-only file, never diffed


def _gateway_filters() -> dict[str, Any]:
    """roles/gateway/filter_plugins/gik_gateway.py's filters: the functions the role itself calls
    (healthchecks/gateway.py's Options.from_settings, host_upstreams, render)."""
    return _role_filters(GATEWAY_ROLE / "filter_plugins" / "gik_gateway.py")


def _gateway_tls_errors() -> Callable[[Any, Any], list[str]]:
    """roles/gateway/filter_plugins/gik_gateway_tls.py's gik_gateway_tls_errors: the role's check of the TLS pair on
    the controller (compose-preflight's _check_gateway_tls, as the server loads them)."""
    check: Callable[[Any, Any], list[str]] = _role_filters(
        GATEWAY_ROLE / "filter_plugins" / "gik_gateway_tls.py")["gik_gateway_tls_errors"]
    return check


def gateway_enabled(settings: Settings) -> bool:
    """site.yml's ``when: gateway_enabled | default(false) | bool`` for the gateway role on a gpu_hosts host."""
    try:
        return ansible_bool(settings.value("gateway_enabled") or False, "gateway_enabled")
    except ConfigError as e:
        raise SettingsError(str(e)) from None


def _gateway_options(settings: Settings) -> dict[str, Any]:
    """roles/gateway/vars/main.yml's gateway_settings: every catalogued gateway_* setting by its Ansible name, the
    host's value, else the catalogue's."""
    cat = stack.load()
    return {s.ansible: (settings.value(s.ansible) if settings.value(s.ansible) is not None else s.default)
            for sid, s in cat.settings.items() if sid.startswith("gateway_") and s.ansible}


def gateway(settings: Settings) -> Gateway:
    """The gateway role's files for this host (gateway_mode host), checked as its validate.yml checks them (every
    check before any change; a bad setting raises SettingsError naming it, no secret in the message)."""
    engines = settings.engines
    spec = {"options": _gateway_options(settings), "engines": engines,
            "models": {e: settings.model(e) for e in engines}}
    return _gateway_files(settings, spec, engines)


# -- the lab gateway (site.yml's last play, gateway_mode lab on the inventory group gateway_hosts) -------------------
LAB_GATEWAY_GROUP = "gateway_hosts"
LAB_UPSTREAM_GROUP = "gpu_hosts"  # roles/gateway/defaults: gateway_upstream_group


def _user_set(settings: Settings, name: str) -> bool:
    """Whether the inventory (or a settings file, host data) sets ``name`` for this host: Ansible's ``name in
    hostvars[h]`` (a role's default is no host variable)."""
    source = settings.sources.get(name, "")
    return bool(source) and not source.startswith("roles/") and source != "workstation"


def lab_host(name: str, settings: Settings, *, address: str | None = None, ansible_host: str | None = None,
             local: bool = False) -> dict[str, Any]:
    """One upstream host of the lab gateway as roles/gateway/vars/main.yml's gateway_lab_hosts lists it: reached at
    ``address`` (its host variable gateway_upstream_address), else ``ansible_host``, else its inventory ``name``; its
    engines, published ports and served names; the bind addresses its inventory sets; its own gateway's port where
    gateway_enabled, and ``tls`` where that gateway has gateway_tls_cert_src and gateway_tls_key_src (the lab gateway
    then reaches it by https); ``local``: the lab gateway's own host (its engines by compose service name)."""
    cat = stack.load()
    entry: dict[str, Any] = {
        "address": address or ansible_host or name,
        "engines": settings.engines,
        "ports": {e: settings.port(e) for e in settings.engines},
        "models": {e: settings.model(e) for e in settings.engines},
        "settings": {s.ansible: settings.raw.get(s.ansible) for sid, s in cat.settings.items()
                     if sid.endswith("bind_address") and s.ansible and _user_set(settings, s.ansible)},
        "local": local,
    }
    if gateway_enabled(settings):
        port = settings.value("gateway_port")
        entry["gateway_port"] = port if port is not None else cat.settings["gateway_port"].default
        # its own gateway serves TLS only with the lab's certificate and key (the role's gateway_lab_hosts 'tls')
        entry["tls"] = all(str(settings.value(n) or "") for n in ("gateway_tls_cert_src", "gateway_tls_key_src"))
    return entry


def load_host_data(data: Mapping[str, Any], *, workstation: Mapping[str, Any] | None = None,
                   facts: Mapping[str, Any] | None = None, files_salt: str = "") -> Settings:
    """``load`` for a pyinfra host's data (the inventory's host data and ``--data``): its settings, its settings
    file (``gik_settings``, else GIK_SETTINGS), its group_vars layer (``gik_group_vars``, else GIK_GROUP_VARS) and
    vault password file."""
    overrides = {k: v for k, v in data.items() if setting_name(k, site_roles())}
    return load(overrides, settings_file=data.get("gik_settings") or os.environ.get("GIK_SETTINGS") or None,
                group_vars=data.get("gik_group_vars") or os.environ.get("GIK_GROUP_VARS") or None,
                workstation=workstation, facts=facts, vault_password_file=data.get("gik_vault_password_file") or None,
                groups=data.get("gik_group_names"), files_salt=files_salt)


def inventory_name(pyinfra_name: str, data: Mapping[str, Any]) -> str:
    """The host's Ansible inventory name (pyinfra/inventory.py keeps it: a local host is pyinfra's ``@local``);
    ``@local`` without an inventory is ``local``, as its report folder."""
    return str(data.get("gik_inventory_name") or pyinfra_name.lstrip("@"))


def lab_hosts(upstreams: Iterable[tuple[str, Mapping[str, Any]]], this: str,
              settings_of: Callable[[str, Mapping[str, Any]], Settings] | None = None) -> dict[str, dict[str, Any]]:
    """roles/gateway's gateway_lab_hosts for the lab gateway on pyinfra host ``this``: every host of gpu_hosts
    (``upstreams``: pyinfra name and host data, in the group's order) by its inventory name, at its
    gateway_upstream_address, else its ansible_host (pyinfra's ssh_hostname). ``settings_of``: a host's settings
    (default: ``load_host_data`` of its data)."""
    out: dict[str, dict[str, Any]] = {}
    for name, data in upstreams:
        settings = settings_of(name, data) if settings_of else load_host_data(data)
        inv = inventory_name(name, data)
        out[inv] = lab_host(inv, settings, address=str(data.get("gateway_upstream_address") or "") or None,
                            ansible_host=str(data.get("ssh_hostname") or "") or None, local=name == this)
    return out


def lab_gateway(settings: Settings, hosts: Mapping[str, Mapping[str, Any]]) -> Gateway:
    """The gateway role's files for a host of gateway_hosts (gateway_mode lab): in front of every host of gpu_hosts
    (``hosts``: inventory name -> ``lab_host``), its config from the role's own filter (one model name served by
    several hosts: several deployments of that name, load-balanced), the key of every keyed engine of the catalogue,
    the container's proxy settings with every upstream host in NO_PROXY (``_proxy_variables``). Checked as validate.yml
    checks it (a loopback upstream address names gateway_upstream_address); SettingsError naming the setting."""
    cat = stack.load()
    spec = {"options": _gateway_options(settings), "hosts": {n: dict(h) for n, h in hosts.items()}}
    return _gateway_files(settings, spec, list(cat.engines))


def _proxy_variables(settings: Settings, spec: Mapping[str, Any]) -> dict[str, Any]:
    """roles/gateway's proxy variables for gateway.env.j2: gateway_http_proxy/https_proxy/no_proxy (the proxy role's
    settings by default, as the stack's .env has them), gateway_no_proxy_all (the lab's list, loopback and every
    upstream host's address but the gateway's own: the gateway reaches its upstreams directly, never through the
    proxy; the Hugging Face fallback goes through it), gateway_proxied, gateway_env_has_secret."""
    http, https = (str(settings.value(n) or "") for n in ("gateway_http_proxy", "gateway_https_proxy"))
    hosts = spec.get("hosts") or {}
    out: list[str] = []
    for h in [*str(settings.value("gateway_no_proxy") or "").split(","), "localhost", "127.0.0.1", "::1",
              *(str(x.get("address")) for x in hosts.values() if not x.get("local"))]:
        if h.strip() and h.strip() not in out:
            out.append(h.strip())
    return {"gateway_http_proxy": http, "gateway_https_proxy": https, "gateway_no_proxy_all": ",".join(out),
            "gateway_proxied": bool(http + https),
            "gateway_env_has_secret": "@" in f"{http} {https}"}


def _gateway_files(settings: Settings, spec: Mapping[str, Any], key_engines: list[str]) -> Gateway:
    """The role's validate.yml and files for ``spec`` (gateway_spec) and the engines whose key it sends
    (gateway_key_engines)."""
    from ansible.errors import AnsibleFilterError

    doc = yaml.safe_load(stack.PATH.read_text())  # the role's gateway_stack: stack.yml as from_yaml reads it
    filters = _gateway_filters()
    options = spec["options"]
    try:
        config = filters["gik_gateway_config"](spec)
    except AnsibleFilterError as e:
        raise SettingsError(_no_secrets(str(e.message))) from None
    master_key = str(settings.raw.get("gateway_master_key") or "")
    if not master_key.startswith("sk-"):  # validate.yml's assert, its message
        raise SettingsError("gateway_master_key (vault_gateway_master_key, or gateway_master_key_src) must be set "
                            "and start with sk- (LiteLLM's key format): clients send it as their Bearer key")
    cert, key = (str(settings.value(n) or "") for n in ("gateway_tls_cert_src", "gateway_tls_key_src"))
    if bool(cert) != bool(key):
        raise SettingsError("gateway_tls_cert_src and gateway_tls_key_src go together (the lab's certificate and its "
                            "key)")
    tls = {"gateway_tls_cert": cert, "gateway_tls_key": key} if cert else {}
    # validate.yml: both files on the controller, then the pair as the server loads it (its own filter: a key of
    # another certificate, an encrypted key, no PEM), before any change
    for (name, src), what in zip(tls.items(), ("certificate", "private key"), strict=False):
        if not Path(src).is_file():
            raise SettingsError(f"{name}_src ({src}) is not a file on the controller: the lab's {what} (PEM) goes "
                                "there")
    if tls:
        texts = []
        for name, src in tls.items():
            try:
                texts.append(Path(src).read_text())
            except (OSError, UnicodeDecodeError) as e:
                raise SettingsError(f"{name}_src ({src}): cannot read ({getattr(e, 'strerror', None) or e})"
                                    ) from None
        errors = _gateway_tls_errors()(*texts)
        if errors:
            raise SettingsError("; ".join(errors))
    keys = filters["gik_gateway_keys"](key_engines)
    # gateway_key_values: hf_secret's value, else the vault's, as hf_secret writes it (gik_key_text: trimmed)
    key_values = {k["engine"]: exposure.key_text(settings.raw.get(f"hf_secret_{k['engine']}_api_key")
                                                 or settings.raw.get(f"vault_{k['engine']}_api_key") or "",
                                                 k["engine"])
                  for k in keys}
    # gateway_hf_token: the fallback's key, only with gateway_hf_fallback_model (the gateway's own file), else empty
    fallback = str(options.get("gateway_hf_fallback_model") or "").strip()
    hf_token = str(settings.raw.get("hf_secret_token") or settings.raw.get("vault_hf_token") or "").strip() \
        if fallback else ""
    if fallback and not hf_token:  # validate.yml's assert, its message (pyinfra's file setting named too)
        raise SettingsError(f"gateway_hf_fallback_model ({fallback}) is set but the Hugging Face token "
                            "(vault_hf_token, hf_secret_token_file) is empty or blank: the fallback would get "
                            "HF_TOKEN=none and fail with 401 exactly when it is needed; set vault_hf_token or unset "
                            "gateway_hf_fallback_model")
    digest = _gateway_digest(settings, config=config, master_key=master_key, keys=keys, key_values=key_values,
                             tls=tls, hf_token=hf_token, options=options)
    variables = {
        **digest,
        "gateway_project_name": settings.value("inference_stack_project_name"),
        "gateway_stack": doc,
        "gateway_settings": options,
        "gateway_compose_dir": f"{settings.stack_dir}/compose",
        "gateway_secret_dir": settings.secret_dir,
        "gateway_tls": bool(tls),
        "gateway_keys": keys,
        "gateway_key_values": key_values,
        **(proxy := _proxy_variables(settings, spec)),
    }
    env = render_template(GATEWAY_ENV_TEMPLATE, variables)
    # every keyed engine's file, empty for an engine without a key (the gateway's entrypoint exports it as "none")
    secrets = {"gateway_master_key": master_key, **{k["secret"]: key_values[k["engine"]] for k in keys},
               "gateway_hf_token": hf_token}
    return Gateway(config=config, env=env, secrets=secrets, tls=tls, env_secret=proxy["gateway_env_has_secret"])


def _gateway_digest(settings: Settings, *, config: str, master_key: str, keys: list[dict[str, str]],
                    key_values: Mapping[str, str], tls: Mapping[str, str], hf_token: str = "",
                    options: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """gateway.env's ``<GATEWAY>_FILES_DIGEST``: roles/gateway/vars/main.yml's own gateway_files_digest_var and
    gateway_files_digest (the salted digest of the files the gateway reads at start: its config, master key, engine
    keys, token, TLS files), evaluated over this host's values and its salt (``Settings.raw``'s
    inference_stack_files_salt)."""
    given = {"gateway_config": config, "gateway_master_key": master_key, "gateway_keys": keys,
             "gateway_key_values": dict(key_values), "gateway_tls": bool(tls), "gateway_hf_token": hf_token,
             "gateway_settings": dict(options or {}),
             "gateway_tls_cert_src": tls.get("gateway_tls_cert", ""),
             "gateway_tls_key_src": tls.get("gateway_tls_key", ""),
             "gateway_kit_root": str(ROOT),
             "inference_stack_files_salt": settings.raw.get("inference_stack_files_salt", "")}
    resolver = _Resolver({**settings.raw, **role_file("gateway", "vars", "main.yml"), **given})
    return {name: resolver.get(name) for name in ("gateway_files_digest_var", "gateway_files_digest")}
