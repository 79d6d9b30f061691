"""The endpoint arguments ``healthcheck`` and ``smoke-bench`` share: ENGINE=URL, --compose, --inventory,
per-engine --model / --api-key-file, TLS trust; and their resolution into endpoints, every setting validated
(ConfigError naming the flag) before any request."""

from __future__ import annotations

import argparse
import collections
import os
import re
from collections.abc import Sequence
from dataclasses import replace
from typing import Any
from urllib.parse import urlsplit

from .. import __version__
from ..endpoints.compose import LABEL, from_compose
from ..endpoints.inventory import from_inventory
from ..endpoints.url import Endpoint, default_endpoints, parse_endpoint, with_defaults
from ..engines import ENGINES, NAMES
from ..errors import ConfigError
from .common import positive
from .console import err

EXIT_CODES = "Exit codes: 0 success (every endpoint healthy / done), 1 an endpoint unhealthy or failing, " \
             "2 usage or configuration error."


def add_endpoint_arguments(p: argparse.ArgumentParser) -> None:
    """The endpoint flags of ``healthcheck`` and ``smoke-bench`` (and each engine's own)."""
    p.add_argument("endpoints", nargs="*", metavar="ENDPOINT",
                   help=f"ENGINE=URL ({', '.join(NAMES)}) or a bare URL to probe; "
                        "default: the kit's ports on 127.0.0.1")
    p.add_argument("--compose", metavar="FILE", help="discover endpoints from a compose file or project dir")
    p.add_argument("--inventory", metavar="FILE", help="discover endpoints from an Ansible inventory")
    p.add_argument("--group", metavar="NAME", help="with --inventory: only hosts of this group")
    p.add_argument("--host", metavar="NAME", help="with --inventory: only this inventory host")
    p.add_argument("--model", metavar="[ENGINE=]NAME", action="append",
                   help="the model to use; ENGINE=NAME for one engine's endpoints (repeatable; per-engine "
                        "values win over a bare NAME)")
    p.add_argument("--timeout", type=positive(float), default=30.0, metavar="SECONDS",
                   help="per-request timeout (default 30)")
    p.add_argument("--api-key-file", metavar="[ENGINE=]FILE", action="append",
                   help="file holding the API key (never pass keys in argv); ENGINE=FILE for one engine's "
                        "endpoints (repeatable; a bare FILE applies to every endpoint). Without one, "
                        f"${OPENAI_KEY_ENV} is used where set, as vllm bench serve and the OpenAI SDK read it")
    tls = p.add_mutually_exclusive_group()
    tls.add_argument("--ca-bundle", metavar="FILE",
                     help="also trust the CAs in this PEM file or hashed directory (an internal CA); the system "
                          "store, SSL_CERT_FILE and SSL_CERT_DIR are always honoured")
    tls.add_argument("--insecure", action="store_true",
                     help="do not verify TLS certificates (prints a warning; for a first look only)")
    p.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    if p.epilog is None:
        p.epilog = EXIT_CODES
    for engine in ENGINES.values():
        engine.add_arguments(p)


def deployed_only(eps: list[Endpoint]) -> list[Endpoint]:
    """Compose endpoints whose service has a container here; all of them when docker cannot tell."""
    from ..dockerhost import deployed_services

    projects = {e.meta.get("compose_project", "") for e in eps}
    have: set[str] = set()
    for project in projects:
        found = deployed_services(project)
        if found is None or not found:
            return eps  # docker unreachable, or nothing deployed here: check what the file declares
        have |= found
    kept = [e for e in eps if e.meta.get("compose_service") in have]
    for e in eps:
        if e not in kept:
            err.print(f"note: {e.label} is declared but not deployed here; not checked", markup=False,
                      highlight=False)
    return kept


OPENAI_KEY_ENV = "OPENAI_API_KEY"
NO_BEARER_KEY = {"ollama", "hf"}  # Ollama's API takes no key; HF reads its own token (HF_TOKEN, token file)
_WORD = re.compile(r"[A-Za-z][A-Za-z0-9_-]*")


def per_engine(flag: str, values: Sequence[str] | None) -> dict[str | None, str]:
    """``[ENGINE=]VALUE`` occurrences of a repeatable flag: {engine or None (every endpoint): value}."""
    found: dict[str | None, str] = {}
    for raw in values or []:
        head, sep, tail = raw.partition("=")
        engine: str | None = None
        value = raw
        if sep and head.strip().lower() in NAMES:
            engine, value = head.strip().lower(), tail.strip()
        elif sep and _WORD.fullmatch(head.strip()) and not (flag == "--api-key-file" and os.path.exists(raw)):
            raise ConfigError(f"{flag} {raw}: unknown engine {head.strip()!r} (expected one of {', '.join(NAMES)})")
        if not value.strip():
            raise ConfigError(f"{flag} {raw!r}: empty value")
        if engine in found and found[engine] != value:
            raise ConfigError(f"{flag} given twice for {engine or 'every endpoint'}: {found[engine]!r} and {value!r}")
        found[engine] = value
    return found


def distinct(eps: list[Endpoint]) -> list[Endpoint]:
    """One endpoint listed twice (argv, --compose and --inventory may name the same one) is checked once, with a
    warning; endpoints that differ only in their URL's path get the path in their label, so reports, JUnit cases
    and Prometheus series stay one per endpoint."""
    out: list[Endpoint] = []
    seen: set[tuple[Any, ...]] = set()
    for e in eps:
        key = (e.engine, e.url, e.model, e.label)
        if key in seen:
            err.print(f"warning: {e.label} ({e.url}) is listed twice: checked once", markup=False, highlight=False)
            continue
        seen.add(key)
        out.append(e)
    counts = collections.Counter(e.label for e in out)
    renamed = []
    for e in out:
        path = urlsplit(e.url).path
        renamed.append(replace(e, name=f"{e.label}{path}") if counts[e.label] > 1 and path else e)
    counts = collections.Counter(e.label for e in renamed)
    numbered: collections.Counter[str] = collections.Counter()
    final = []
    for e in renamed:
        if counts[e.label] > 1:
            numbered[e.label] += 1
            e = replace(e, name=f"{e.label}#{numbered[e.label]}")
        final.append(e)
    return final


def running_here() -> list[Endpoint]:
    """No endpoint named: the kit's compose services running on this machine's Docker (after ``make demo`` or
    ``docker compose up``), each at its published port with its labelled model; [] when none runs or Docker
    cannot be reached (then the engines' default ports are tried)."""
    from ..dockerhost import running_labelled

    eps = []
    for c in sorted(running_labelled(LABEL) or [], key=lambda c: (c["project"], c["service"])):
        engine = c.get(f"{LABEL}.engine", "")
        if engine not in ENGINES or not c["host_port"].isdigit():
            continue  # not an engine the kit knows, or not published: unreachable from here
        host = "127.0.0.1" if c["host_ip"] in ("", "0.0.0.0", "::") else c["host_ip"]
        gpu = c.get(f"{LABEL}.gpu", "").lower()
        eps.append(Endpoint(engine=engine, url=f"http://{'[' + host + ']' if ':' in host else host}:{c['host_port']}",
                            model=c.get(f"{LABEL}.model") or None, name=c["service"],
                            expect_gpu=True if gpu == "true" else False if gpu == "false" else None,
                            meta={"compose_service": c["service"], "compose_project": c["project"]}))
    if eps:
        projects = sorted({e.meta["compose_project"] for e in eps})
        if len(projects) > 1:  # two projects' vllm services: name each by its project, not vllm#1, vllm#2
            eps = [replace(e, name=f"{e.meta['compose_project']}/{e.label}") for e in eps]
        err.print(f"note: no endpoint given: the compose services running here ({', '.join(projects)}): "
                  f"{', '.join(e.label for e in eps)}", markup=False, highlight=False)
    return eps


def openai_key_from_env(eps: list[Endpoint]) -> list[Endpoint]:
    """Endpoints with no key file and no key variable of their own take ``$OPENAI_API_KEY`` when it is set, as
    ``vllm bench serve`` and the OpenAI SDK do (key files stay the recommended way); one line on stderr says
    which endpoints use it, never the value."""
    if not os.environ.get(OPENAI_KEY_ENV, "").strip():
        return eps
    out, used = [], []
    for e in eps:
        if not e.api_key_file and not e.api_key_env and e.engine not in NO_BEARER_KEY:
            e = replace(e, api_key_env=OPENAI_KEY_ENV)
            used.append(e.label)
        out.append(e)
    if used:
        err.print(f"note: API key from ${OPENAI_KEY_ENV} (no --api-key-file given) for {', '.join(used)}",
                  markup=False, highlight=False)
    return out


def resolve_endpoints(args: argparse.Namespace) -> list[Endpoint]:
    """Endpoints from argv, --compose and --inventory with every per-endpoint setting applied; all of the
    settings validated (ConfigError naming the flag) before any request."""
    from ..protocols import read_api_key, tls_context

    if (args.group or args.host) and not args.inventory:
        raise ConfigError(f"{'--group' if args.group else '--host'} needs --inventory (it selects inventory hosts)")
    models = per_engine("--model", args.model)
    key_files = per_engine("--api-key-file", args.api_key_file)
    for path in key_files.values():
        read_api_key(path)  # fail early, as a config error, if unreadable
    tls_context(args.ca_bundle, insecure=args.insecure)  # a bad --ca-bundle is a config error before any request
    eps: list[Endpoint] = [parse_endpoint(s) for s in args.endpoints]
    if args.compose:
        eps += deployed_only(from_compose(args.compose))
    if args.inventory:
        eps += from_inventory(args.inventory, args.group, args.host)
    if not eps:
        eps = running_here() or default_endpoints()
    if all(e.engine for e in eps):  # engines to detect may still match a per-engine value
        have = {e.engine for e in eps}
        for flag, values in (("--model", models), ("--api-key-file", key_files)):
            for engine in values:
                if engine is not None and engine not in have:
                    raise ConfigError(f"{flag} {engine}=...: no {engine} endpoint to apply it to")
    eps = with_defaults(eps, models, key_files)
    for eng in ENGINES.values():
        eps = eng.configure(args, eps)
    eps = distinct(eps)
    eps = openai_key_from_env(eps)
    for e in eps:  # every key source (files, environment variables named by engines) readable now
        read_api_key(e.api_key_file, env=e.api_key_env)
    if args.insecure:
        err.print("warning: --insecure: TLS certificates are not verified; anyone on the path can impersonate "
                  "an https endpoint", markup=False, highlight=False)
    for eng in ENGINES.values():
        for note in eng.notes():
            err.print(f"warning: {note}", markup=False, highlight=False)
    return eps


