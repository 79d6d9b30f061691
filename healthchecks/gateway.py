"""The gateway's configuration: LiteLLM proxy ``config.yaml`` rendered from the catalogue (healthchecks/stack.yml).

Two uses, one renderer:

- per host (``host_upstreams``): one OpenAI-compatible URL and key in front of this host's engines; the gateway
  reaches each engine by its compose service name on the project network (``http://vllm:8000/v1``);
- for the lab (``lab_upstreams``): a gateway host in front of every host's engines, by each host's address and
  the engine's published port (``http://gpu01:8000/v1``); the gateway host's own engines by service name.

Every engine becomes one LiteLLM deployment whose ``model_name`` is the name the engine serves, so one model name
served by several engines or hosts is one model group: LiteLLM's router balances it (``routing_strategy``), takes a
failing deployment out for ``cooldown_time`` after ``allowed_fails`` failures, retries elsewhere (``num_retries``),
and the background health checks (``background_health_checks`` with ``enable_health_check_routing``) take an
unhealthy one out before a request meets it. Each deployment also gets its own route ``MODEL@WHERE`` (``@vllm``,
``@gpu01/vllm``) to reach one engine through the gateway (smoke-bench measures the gateway's cost with it). Where the
lab allows it, Hugging Face Inference Providers (the HF router, the token of the ``hf_token`` secret) are every
group's last fallback.

No secret is ever written here: keys are ``os.environ/NAME`` references that LiteLLM resolves in its own process,
where the gateway's entrypoint (compose/compose.gateway.yaml) exported each /run/secrets file (``vllm_api_key`` ->
``VLLM_API_KEY``).

    python -m healthchecks.gateway [--env compose/.env] [--engines vllm,llamacpp] [--lab lab.json] [-o FILE]
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import yaml

from . import stack

LITELLM_VERSION = "1.110.2"  # the pin of compose/images/litellm/requirements.in (never 1.107.0: compromised)
OFFICIAL_IMAGE = f"ghcr.io/berriai/litellm:main-v{LITELLM_VERSION}"
OFFLINE_IMAGE = f"local/litellm:{LITELLM_VERSION}"
MASTER_KEY_ENV = "GATEWAY_MASTER_KEY"  # the gateway_master_key secret, exported by the entrypoint
HF_TOKEN_ENV = "HF_TOKEN"  # the hf_token secret
NO_KEY = "none"  # what a keyless engine is sent (the OpenAI client LiteLLM uses insists on some key)
ROUTING_STRATEGIES = tuple(stack.load().settings["gateway_routing_strategy"].choices or ())  # the catalogue's


class GatewayError(ValueError):
    """A bad gateway setting or upstream: one line naming it."""


@dataclass(frozen=True)
class Upstream:
    """One engine behind the gateway."""

    engine: str
    model: str  # the name the engine serves: the model group
    api_base: str  # OpenAI-compatible base URL, ending in /v1
    host: str = ""  # the inventory host (lab gateway); "" = this host
    key_env: str | None = None  # the gateway process's environment variable holding the engine's key
    sends: str | None = None  # the model name sent upstream when it is not ``model`` (a host gateway's route)

    @property
    def where(self) -> str:
        return f"{self.host}/{self.engine}" if self.host else self.engine


@dataclass(frozen=True)
class Options:
    """The gateway's router settings (catalogue settings ``gateway_<field>``)."""

    num_retries: int = 2
    allowed_fails: int = 1
    cooldown_time: int = 30
    health_check_interval: int = 30
    request_timeout: int = 600
    routing_strategy: str = "simple-shuffle"
    hf_fallback_model: str = ""  # e.g. HuggingFaceTB/SmolLM3-3B: empty = no Hugging Face fallback
    hf_router_url: str = "https://router.huggingface.co/v1"

    @classmethod
    def from_settings(cls, values: Mapping[str, Any], *, source: str = "ansible",
                      catalogue: stack.Catalogue | None = None) -> Options:
        """The options from settings by their Ansible names (``source="ansible"``), .env names (``"env"``) or
        catalogue ids (``"id"``), each converted and range-checked by the catalogue; absent ones take its default."""
        cat = catalogue or stack.load()
        out: dict[str, Any] = {}
        for f in fields(cls):
            setting = cat.settings.get(f"gateway_{f.name}")
            if setting is None:
                continue
            name = {"ansible": setting.ansible, "env": setting.env}.get(source, setting.id) or setting.id
            raw = values.get(name, setting.default)
            if raw is None:
                continue
            try:
                out[f.name] = setting.convert(raw, name=name, source="env" if source == "env" else "ansible")
            except stack.SettingError as e:
                raise GatewayError(str(e)) from None
        opts = cls(**out)
        opts.check()
        return opts

    def check(self) -> None:
        if self.routing_strategy not in ROUTING_STRATEGIES:
            raise GatewayError(f"gateway routing strategy {self.routing_strategy!r} is not one of "
                               f"{', '.join(ROUTING_STRATEGIES)}")
        for name, low in (("num_retries", 0), ("allowed_fails", 0), ("cooldown_time", 0),
                          ("health_check_interval", 1), ("request_timeout", 1)):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < low:
                raise GatewayError(f"gateway {name} must be a whole number >= {low}, got {value!r}")
        if self.hf_fallback_model and not self.hf_router_url.startswith(("http://", "https://")):
            raise GatewayError(f"gateway hf_router_url {self.hf_router_url!r} is not an http(s) URL")


def key_env(engine: str, catalogue: stack.Catalogue | None = None) -> str | None:
    """The environment variable that holds ``engine``'s API key in the gateway: its key-file setting's compose
    variable without ``_FILE`` (VLLM_API_KEY_FILE -> the secret vllm_api_key -> VLLM_API_KEY); None: keyless."""
    cat = catalogue or stack.load()
    entry = cat.engines[engine]
    setting = entry.api_key_file_setting or cat.settings.get(f"{engine}_api_key_file")
    if setting is None or not setting.env or not setting.env.endswith("_FILE"):
        return None
    return setting.env[: -len("_FILE")]


SELF = stack.GATEWAY  # the gateway's own catalogue entry is no upstream (not __name__: "__main__" under -m)


def _engine(name: str, cat: stack.Catalogue) -> stack.EngineEntry:
    if name not in cat.engines or name == SELF:
        known = ", ".join(n for n in cat.engines if n != SELF)
        raise GatewayError(f"engine {name!r} is not an engine of the catalogue ({known})")
    return cat.engines[name]


def _model(engine: str, models: Mapping[str, Any], cat: stack.Catalogue) -> str:
    entry = _engine(engine, cat)
    model = models.get(engine, entry.model_setting.default)
    if not isinstance(model, str) or not model.strip():
        raise GatewayError(f"{entry.model_setting.ansible or entry.model_setting.env}: engine {engine} has no "
                           "model name to route")
    return model.strip()


def host_upstreams(engines: Sequence[str], models: Mapping[str, Any] | None = None,
                   catalogue: stack.Catalogue | None = None) -> list[Upstream]:
    """This host's ``engines`` as the gateway of its compose project reaches them: the compose service by name, the
    engine's port inside its container (the catalogue's ``port``). ``models``: engine -> served name (the
    catalogue's default when absent)."""
    cat = catalogue or stack.load()
    out = []
    for e in engines:
        entry = _engine(e, cat)
        out.append(Upstream(engine=e, model=_model(e, models or {}, cat),
                            api_base=f"http://{e}:{entry.port}/v1", key_env=key_env(e, cat)))
    return out


LOOPBACK = ("127.", "::1", "localhost")


def bind_setting(engine: str, catalogue: stack.Catalogue | None = None) -> stack.Setting:
    """The setting of the address ``engine`` is published on: its own (``<engine>_bind_address``), else the stack's."""
    cat = catalogue or stack.load()
    return cat.settings.get(f"{engine}_bind_address") or cat.settings["bind_address"]


def lab_upstreams(hosts: Mapping[str, Mapping[str, Any]], catalogue: stack.Catalogue | None = None,
                  skipped: list[str] | None = None, *, loopback_reachable: bool = True) -> list[Upstream]:
    """Every host's engines, reached over the lab network. ``hosts``: inventory name -> ``{"address": ...,
    "engines": [...], "ports": {engine: published port}, "models": {engine: served name}, "settings": {Ansible
    name: value}, "gateway_port": N, "tls": bool, "local": bool}`` (ports, models and settings default to the
    catalogue's).

    A host marked ``local`` is the gateway's own host: the gateway runs in that host's compose project and reaches
    its engines by service name, as a host gateway does (loopback-published engines, Ollama too). A host that runs
    its own gateway (``gateway_port``) is reached through it, each engine by its route ``MODEL@ENGINE`` with the
    lab's master key, so its engines (Ollama too) stay on loopback; that gateway must be published where the lab
    gateway reaches it (its ``gateway_bind_address``, loopback by default, is an error otherwise), over HTTPS when
    it has the lab's certificate (``tls``: its ``gateway_tls_cert_src``), which then serves TLS only. Otherwise each
    engine is reached at its published port; an engine published on loopback only cannot be reached from another
    host (unless the host's address is loopback too): its ``host/engine`` is appended to ``skipped`` when a list is
    given, else it is an error naming the bind setting and ``gateway_enabled``.

    ``loopback_reachable=False``: the gateway runs in a container of its own network (the compose service, as the
    role deploys it), where 127.0.0.1 is the container itself: another host listed at a loopback address (an
    ``ansible_host`` that is an SSH tunnel or port forward) is an error naming ``gateway_upstream_address``, the
    address the gateway host reaches it at."""
    cat = catalogue or stack.load()
    out = []
    unreachable: dict[str, list[str]] = {}  # host -> the bind settings of its loopback-only engines
    for host, h in hosts.items():
        _check_host(str(host), h)
        address = str(h.get("address") or host)
        if not address or any(c in address for c in "/ ?#@"):
            raise GatewayError(f"gateway upstream host {host}: bad address {address!r}")
        netloc = f"[{address}]" if ":" in address and not address.startswith("[") else address
        settings = h.get("settings") or {}
        if not isinstance(settings, Mapping):
            raise GatewayError(f"gateway upstream host {host}: settings must be a mapping of Ansible names")
        local = bool(h.get("local"))
        if not local and not loopback_reachable and address.startswith(LOOPBACK):
            raise GatewayError(f"gateway upstream host {host}: address {address} is loopback, which the gateway's "
                               "container cannot reach another host at: set gateway_upstream_address for "
                               f"{host} (the address the gateway host reaches it at)")
        via = h.get("gateway_port")
        via = _port(cat.settings["gateway_port"], via, host) if via is not None and not local else None
        scheme = "http"
        if via is not None:
            gw_bind = cat.settings["gateway_bind_address"]
            if str(settings.get(gw_bind.ansible or "", gw_bind.default) or "").startswith(LOOPBACK) \
                    and not address.startswith(LOOPBACK):
                raise GatewayError(
                    f"gateway upstream host {host}: its own gateway, which the lab gateway routes to, is published "
                    f"on loopback only ({gw_bind.ansible}: "
                    f"{settings.get(gw_bind.ansible or '', gw_bind.default)}): set {gw_bind.ansible} for {host} to "
                    f"the address the lab gateway reaches it at ({address})")
            # A host gateway with the lab's certificate serves HTTPS only (compose's entrypoint passes LiteLLM
            # --ssl_certfile_path), so the lab gateway calls it at https://. LiteLLM verifies it as its docs say
            # (https://docs.litellm.ai/docs/guides/security_settings): the certifi bundle, else the CA bundle of
            # SSL_CERT_FILE or litellm_settings.ssl_verify, process-wide. A per-deployment litellm_params ssl_verify
            # is not rendered: LiteLLM 1.110.2's OpenAI-compatible client (llms/openai/common_utils.py) builds its
            # httpx client from get_ssl_configuration() alone and never reads it.
            scheme = "https" if h.get("tls") else "http"
        for e in [str(x) for x in (h.get("engines") or cat.deployed)]:
            entry = _engine(e, cat)
            model = _model(e, h.get("models") or {}, cat)
            if local:
                out.append(Upstream(engine=e, model=model, api_base=f"http://{e}:{entry.port}/v1", host=str(host),
                                    key_env=key_env(e, cat)))
                continue
            if via is not None:
                out.append(Upstream(engine=e, model=model, api_base=f"{scheme}://{netloc}:{via}/v1",
                                    host=str(host), key_env=MASTER_KEY_ENV, sends=f"{model}@{e}"))
                continue
            bind = bind_setting(e, cat)
            if str(settings.get(bind.ansible or "", bind.default) or "").startswith(LOOPBACK) \
                    and not address.startswith(LOOPBACK):
                if skipped is not None:
                    skipped.append(f"{host}/{e}")
                else:
                    unreachable.setdefault(str(host), []).append(f"{e} ({bind.ansible or bind.env})")
                continue
            port = _port(entry.port_setting, (h.get("ports") or {}).get(e, entry.port_setting.default), host)
            out.append(Upstream(engine=e, model=model, api_base=f"http://{netloc}:{port}/v1", host=str(host),
                                key_env=key_env(e, cat)))
    if unreachable:
        host, engines = next(iter(unreachable.items()))
        more = f" (and {len(unreachable) - 1} more host(s): {', '.join(list(unreachable)[1:])})" \
            if len(unreachable) > 1 else ""
        raise GatewayError(f"gateway upstream host {host}: {', '.join(engines)} published on loopback only and no "
                           f"gateway of its own, so the lab gateway cannot reach it: set gateway_enabled: true for "
                           f"{host} (its gateway fronts its engines) or publish them on its lab address "
                           f"(inference_stack_bind_address, with their keys){more}")
    return out


_HOST_FIELDS: dict[str, tuple[tuple[type, ...], str]] = {
    "address": ((str,), "a string"), "engines": ((list, tuple), "a list of engine names"),
    "ports": ((Mapping,), "an object of engine: port"), "models": ((Mapping,), "an object of engine: model name"),
    "settings": ((Mapping,), "an object of setting: value"), "gateway_port": ((int, str), "a port number"),
    "local": ((bool,), "true or false"), "tls": ((bool,), "true or false"),
}


def _check_host(host: str, h: Any) -> None:
    """One lab host's entry has the types lab_upstreams reads (a JSON document or the role's gateway_lab_hosts)."""
    if not isinstance(h, Mapping):
        raise GatewayError(f"gateway upstream host {host}: not an object of address, engines, ports, models, ...")
    for key, value in h.items():
        if key not in _HOST_FIELDS:
            raise GatewayError(f"gateway upstream host {host}: unknown field {key!r} (one of "
                               f"{', '.join(_HOST_FIELDS)})")
        types, what = _HOST_FIELDS[key]
        if value is None or (isinstance(value, bool) and bool not in types) or not isinstance(value, types):
            raise GatewayError(f"gateway upstream host {host}: {key} must be {what}, got {type(value).__name__}")
    if not all(isinstance(e, str) for e in h.get("engines") or ()):
        raise GatewayError(f"gateway upstream host {host}: engines must be a list of engine names")


def _port(setting: stack.Setting, value: Any, host: str) -> int:
    try:
        return int(setting.convert(value, name=f"{host}: {setting.ansible or setting.env}"))
    except stack.SettingError as err:
        raise GatewayError(str(err)) from None


def _deployment(route: str, up: Upstream, model_id: str, *, health_check: bool) -> dict[str, Any]:
    params: dict[str, Any] = {"model": f"openai/{up.sends or up.model}", "api_base": up.api_base,
                              "api_key": f"os.environ/{up.key_env}" if up.key_env else NO_KEY}
    info: dict[str, Any] = {"id": model_id, "engine": up.engine}
    if up.host:
        info["host"] = up.host
    if not health_check:
        info["disable_background_health_check"] = True
    return {"model_name": route, "litellm_params": params, "model_info": info}


def hf_route(model: str) -> str:
    return f"{model}@hf"


def render(upstreams: Sequence[Upstream], options: Options | None = None) -> dict[str, Any]:
    """LiteLLM's proxy config (``model_list``, ``router_settings``, ``general_settings``, ``litellm_settings``)."""
    opts = options or Options()
    opts.check()
    if not upstreams:
        raise GatewayError("the gateway has no engine to route to (no engine enabled)")
    seen: dict[str, Upstream] = {}
    for up in upstreams:
        if up.where in seen:
            raise GatewayError(f"gateway upstream {up.where} is listed twice")
        seen[up.where] = up
    model_list: list[dict[str, Any]] = []
    groups: list[str] = []
    for up in upstreams:  # the model groups: one deployment per engine, health-checked
        model_list.append(_deployment(up.model, up, up.where, health_check=True))
        if up.model not in groups:
            groups.append(up.model)
    # one route per engine, the same upstream, health-checked too: GET /health lists only the deployments its
    # background checks probe, and healthcheck reads every route's upstream state there (a route it does not list
    # reads as failed on a healthy gateway, seen in tests/e2e/test_lab_gateway.py)
    for up in upstreams:
        model_list.append(_deployment(f"{up.model}@{up.where}", up, f"{up.where}#direct", health_check=True))
    router: dict[str, Any] = {
        "routing_strategy": opts.routing_strategy,
        "num_retries": opts.num_retries,
        "allowed_fails": opts.allowed_fails,
        "cooldown_time": opts.cooldown_time,
        "timeout": opts.request_timeout,
        "retry_after": 0,
        "enable_health_check_routing": True,
    }
    if opts.hf_fallback_model:
        route = hf_route(opts.hf_fallback_model)
        model_list.append({"model_name": route,
                           "litellm_params": {"model": f"openai/{opts.hf_fallback_model}",
                                              "api_base": opts.hf_router_url.rstrip("/"),
                                              "api_key": f"os.environ/{HF_TOKEN_ENV}"},
                           "model_info": {"id": "hf", "engine": "hf", "disable_background_health_check": True}})
        router["fallbacks"] = [{g: [route]} for g in groups]
    return {
        "model_list": model_list,
        "router_settings": router,
        "litellm_settings": {"request_timeout": opts.request_timeout, "telemetry": False},
        "general_settings": {
            "master_key": f"os.environ/{MASTER_KEY_ENV}",
            "background_health_checks": True,
            "health_check_interval": opts.health_check_interval,
        },
    }


def to_yaml(config: Mapping[str, Any]) -> str:
    head = (f"# LiteLLM {LITELLM_VERSION} proxy config, rendered by healthchecks/gateway.py from the kit's catalogue:"
            " do not edit\n")
    return head + yaml.safe_dump(dict(config), sort_keys=False, default_flow_style=False, width=120)


# -- command line ---------------------------------------------------------------------------------------------------
def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m healthchecks.gateway",
                                description="Render the gateway's LiteLLM config from the kit's catalogue.")
    p.add_argument("--env", type=Path, help="a compose .env: the engines' model names and the gateway_* settings")
    p.add_argument("--engines", help="comma-separated engines behind a host gateway (default: the deployed ones)")
    p.add_argument("--lab", type=Path, help="JSON: {host: {address, engines, ports, models}} for a lab gateway")
    p.add_argument("-o", "--output", type=Path, help="write the config here (default: standard output)")
    return p


def _read_env(path: Path) -> dict[str, str]:
    """The --env file as Compose reads it; one line naming it when it is missing or unreadable (a .env that does not
    exist would otherwise render the catalogue's defaults, as if it had been read)."""
    from .endpoints.compose import read_dotenv
    from .errors import KitError

    if not path.exists():
        raise GatewayError(f"--env {path}: no such file")
    try:
        return dict(read_dotenv(path))
    except KitError as e:
        raise GatewayError(f"--env {path}: {e}") from None


def _read_lab(path: Path) -> dict[str, Any]:
    try:
        hosts = json.loads(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise GatewayError(f"--lab {path}: {e.strerror or e}") from None
    except ValueError as e:
        raise GatewayError(f"--lab {path}: not JSON ({e})") from None
    if not isinstance(hosts, dict) or not hosts:
        raise GatewayError(f"--lab {path}: not a JSON object of host objects ({{host: {{address, engines, ports, "
                           "models}}}})")
    for host, h in hosts.items():
        try:
            _check_host(host, h)
        except GatewayError as e:
            raise GatewayError(f"--lab {path}: {e}") from None
    return hosts


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    cat = stack.load()
    try:
        env = _read_env(args.env) if args.env is not None else {}
        values, errors = cat.convert_all(env, source="env")
        if errors:
            raise GatewayError(errors[0])
        opts = Options.from_settings(env, source="env", catalogue=cat)
        if args.lab is not None:
            ups = lab_upstreams(_read_lab(args.lab), cat)
        else:
            engines = [e.strip() for e in args.engines.split(",") if e.strip()] if args.engines else cat.deployed
            by_env = {e: cat.engines[e].model_setting.env for e in engines if e in cat.engines}
            models = {e: values[v] for e, v in by_env.items() if v and v in values}
            ups = host_upstreams(engines, models, cat)
        text = to_yaml(render(ups, opts))
    except GatewayError as e:
        print(f"gateway: {e}", file=sys.stderr)
        return 2
    if args.output is None:
        sys.stdout.write(text)
        return 0
    try:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(text, encoding="utf-8")
    except OSError as e:
        print(f"gateway: cannot write {args.output}: {e.strerror or e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
