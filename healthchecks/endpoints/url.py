"""Endpoints named on the command line: ``ENGINE=URL``, a bare URL, an engine with a public address; the
:class:`Endpoint` every source yields.

No network I/O here. Every problem raises :class:`ConfigError` with a one-line message naming the bad value.
"""

from __future__ import annotations

import contextlib
import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from urllib.parse import urlsplit, urlunsplit

from ..engines import CATALOGUE, DEPLOYED, NAMES
from ..errors import ConfigError


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
