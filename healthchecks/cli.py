"""Console script ``healthcheck`` and what both CLIs share (argv conventions, endpoint resolution, exit
codes); ``smoke-bench`` lives in ``bench_cli.py``. The CLIs are the only modules that print.

Exit codes: 0 healthy / benchmark done, 1 an endpoint unhealthy or failing, 2 usage or config error.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import json
import math
import os
import re
import sys
from collections.abc import Sequence
from dataclasses import replace
from typing import Any, NoReturn
from urllib.parse import urlsplit

from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from . import __version__
from .endpoints.compose import from_compose
from .endpoints.inventory import from_inventory
from .endpoints.url import Endpoint, default_endpoints, parse_endpoint, with_defaults
from .engines import ENGINES, NAMES
from .errors import ConfigError

EXIT_OK, EXIT_UNHEALTHY, EXIT_USAGE = 0, 1, 2
out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)


class _Parser(argparse.ArgumentParser):
    """argparse that reports usage errors in one line with exit 2 (its default), without the usage dump."""

    def error(self, message: str) -> NoReturn:
        err.print(f"{self.prog}: error: {message} (see --help)", markup=False, highlight=False)
        sys.exit(EXIT_USAGE)


EXIT_CODES = "Exit codes: 0 success (every endpoint healthy / done), 1 an endpoint unhealthy or failing, " \
             "2 usage or configuration error."


def _positive(kind: type[float] | type[int], *, finite: bool = True) -> Any:
    """An argparse type: a number > 0. ``nan`` never; ``inf`` only with ``finite=False`` (e.g. a request
    rate, where it means "all at once"). Integers may be written as ``1e3`` or ``1000.0``."""
    def conv(text: str) -> float | int:
        try:
            value = float(text.strip())
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if math.isnan(value):
            raise argparse.ArgumentTypeError(f"{text!r} is not a number")
        if math.isinf(value) and (finite or kind is int or value < 0):
            raise argparse.ArgumentTypeError(f"{text!r} must be a finite number")
        if value <= 0:
            raise argparse.ArgumentTypeError(f"{text!r} must be greater than 0")
        if kind is int:
            if not value.is_integer():
                raise argparse.ArgumentTypeError(f"{text!r} is not a whole number")
            return int(value)
        return value
    return conv


def safe_output() -> None:
    """A terminal or pipe that cannot show a character (LANG=C, PYTHONIOENCODING=ascii) gets an escape for
    it, never a UnicodeEncodeError traceback: server text and host names are not ASCII-only."""
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(AttributeError, ValueError, OSError):
            stream.reconfigure(errors="backslashreplace")  # type: ignore[union-attr]


def _common(p: argparse.ArgumentParser) -> None:
    safe_output()  # both CLIs build their parser through here
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
    p.add_argument("--timeout", type=_positive(float), default=30.0, metavar="SECONDS",
                   help="per-request timeout (default 30)")
    p.add_argument("--api-key-file", metavar="[ENGINE=]FILE", action="append",
                   help="file holding the API key (never pass keys in argv); ENGINE=FILE for one engine's "
                        "endpoints (repeatable; a bare FILE applies to every endpoint)")
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
    from .diagnose import deployed_services

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


def resolve_endpoints(args: argparse.Namespace) -> list[Endpoint]:
    """Endpoints from argv, --compose and --inventory with every per-endpoint setting applied; all of the
    settings validated (ConfigError naming the flag) before any request."""
    from .protocols import read_api_key, tls_context

    if (args.group or args.host) and not args.inventory:
        raise ConfigError(f"{'--group' if args.group else '--host'} needs --inventory (it selects inventory hosts)")
    models = per_engine("--model", args.model)
    key_files = per_engine("--api-key-file", args.api_key_file)
    for path in key_files.values():
        read_api_key(path)  # fail early, as a config error, if unreadable
    tls_context(args.ca_bundle, args.insecure)  # a bad --ca-bundle is a config error before any request
    eps: list[Endpoint] = [parse_endpoint(s) for s in args.endpoints]
    if args.compose:
        eps += deployed_only(from_compose(args.compose))
    if args.inventory:
        eps += from_inventory(args.inventory, args.group, args.host)
    if not eps:
        eps = default_endpoints()
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
    for e in eps:  # every key source (files, environment variables named by engines) readable now
        read_api_key(e.api_key_file, env=e.api_key_env)
    if args.insecure:
        err.print("warning: --insecure: TLS certificates are not verified; anyone on the path can impersonate "
                  "an https endpoint", markup=False, highlight=False)
    for eng in ENGINES.values():
        for note in eng.notes():
            err.print(f"warning: {note}", markup=False, highlight=False)
    return eps


# -- healthcheck ---------------------------------------------------------------------------------------
def healthcheck_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="healthcheck", description="Verify LLM endpoints: liveness, readiness, a real completion "
                "(streaming and not), structured output or embeddings, GPU residency, TLS certificate, auth and "
                "metrics.")
    _common(p)
    p.add_argument("--wait", type=_positive(float), metavar="SECONDS",
                   help="poll with backoff until healthy or SECONDS pass (model loads can take minutes)")
    p.add_argument("--json", action="store_true", help="print one JSON document")
    p.add_argument("--junit", metavar="FILE", help="also write JUnit XML (one testcase per endpoint and check)")
    p.add_argument("--prometheus", metavar="FILE",
                   help="also write node-exporter textfile metrics (up and latency per endpoint and check); "
                        "written atomically, for the textfile collector directory")
    p.add_argument("--no-capabilities", action="store_true",
                   help="skip the capability rows (structured output)")
    p.add_argument("--max-tokens", type=_positive(int), default=8, metavar="N",
                   help="tokens per test completion (default 8)")
    gpu = p.add_mutually_exclusive_group()
    gpu.add_argument("--expect-gpu", dest="expect_gpu", action="store_true", default=None,
                     help="fail when the model runs on the CPU, wholly or in part (Ollama: size_vram 0 or a "
                          "CPU/GPU split); without it that is a warning")
    gpu.add_argument("--no-expect-gpu", dest="expect_gpu", action="store_false",
                     help="CPU-only hosts: system-RAM residency is fine")
    p.add_argument("--no-diagnose", action="store_true", help="skip docker container diagnosis")
    return p


STATUS_STYLE = {"pass": "green", "fail": "bold red", "warn": "yellow", "skip": "dim"}


def _render(reports: list[Any]) -> None:
    from .check import printable

    table = Table(title="healthcheck", show_lines=False)
    for col in ("endpoint", "engine", "check", "status", "ms", "reason"):
        table.add_column(col, overflow="fold")
    for r in reports:
        engine = printable((r.engine or "?") + (f" ({r.version})" if r.version else ""))
        for i, c in enumerate(r.checks):
            # server text is never rich markup, nor terminal control sequences
            table.add_row(Text(printable(r.name)) if i == 0 else "", Text(engine) if i == 0 else "", Text(c.name),
                          Text(c.status, style=STATUS_STYLE.get(c.status, "")),
                          "" if c.latency_ms is None else f"{c.latency_ms:.0f}", Text(printable(c.reason)))
    out.print(table)
    for r in reports:
        if r.diagnosis:
            d = r.diagnosis
            line = (f"{r.name}: container {d['container']} {d['state']}"
                    f"{' (' + d['health'] + ')' if d.get('health') else ''}, restarts {d['restart_count']}")
            if d.get("cause"):
                line += f"; cause: {d['cause']}; fix: {d['fix']}"
            out.print(line, markup=False, highlight=False)
    bad = [r for r in reports if not r.healthy]
    if bad:
        for r in bad:
            fail = r.first_failure
            err.print(printable(f"UNHEALTHY {r.name}: {fail.name if fail else '?'}: {fail.reason if fail else '?'}"),
                      markup=False, highlight=False)
    else:
        out.print(f"[green]all {len(reports)} endpoint(s) healthy[/]")


def healthcheck_main(argv: Sequence[str] | None = None) -> int:
    args = healthcheck_parser().parse_args(argv)
    from .check import Options, check_all

    try:
        eps = resolve_endpoints(args)
    except ConfigError as exc:
        err.print(f"healthcheck: {exc}", markup=False, highlight=False)
        return EXIT_USAGE
    try:
        for flag, path in (("--junit", args.junit), ("--prometheus", args.prometheus)):
            if path:
                writable(flag, path)
    except ConfigError as exc:
        err.print(f"healthcheck: {exc}", markup=False, highlight=False)
        return EXIT_USAGE
    if args.expect_gpu is not None:
        eps = [replace(e, expect_gpu=args.expect_gpu) for e in eps]
    opts = Options(timeout=args.timeout, max_tokens=args.max_tokens, diagnose=not args.no_diagnose,
                   ca_bundle=args.ca_bundle, insecure=args.insecure, capabilities=not args.no_capabilities)
    try:
        if args.wait:
            reports = asyncio.run(_wait_with_progress(eps, opts, args.wait, quiet=args.json))
        else:
            reports = asyncio.run(check_all(eps, opts))
    except ConfigError as exc:
        err.print(f"healthcheck: {exc}", markup=False, highlight=False)
        return EXIT_USAGE
    except KeyboardInterrupt:
        err.print("healthcheck: interrupted")
        return 130
    if args.json:
        doc = {"healthy": all(r.healthy for r in reports), "endpoints": [r.to_dict() for r in reports]}
        print(json.dumps(doc, indent=2))
    else:
        _render(reports)
    from .check import junit_xml, prometheus_text

    try:
        if args.junit:
            write_atomically(args.junit, junit_xml(reports))
        if args.prometheus:
            write_atomically(args.prometheus, prometheus_text(reports))
    except OSError as exc:  # the results above are printed; the file is what failed
        err.print(f"healthcheck: cannot write {exc.filename}: {exc.strerror}", markup=False, highlight=False)
        return EXIT_USAGE
    return EXIT_OK if all(r.healthy for r in reports) else EXIT_UNHEALTHY


def writable(flag: str, path: str) -> None:
    """An output file the run will be able to write, checked before any request (ConfigError naming it)."""
    target = os.path.abspath(path)
    folder = os.path.dirname(target)
    if os.path.isdir(target):
        raise ConfigError(f"{flag} {path} is a directory, not a file")
    if not os.path.isdir(folder):
        raise ConfigError(f"{flag} {path}: directory {folder} does not exist")
    if not os.access(folder, os.W_OK | os.X_OK) or (os.path.exists(target) and not os.access(target, os.W_OK)):
        raise ConfigError(f"{flag} {path}: not writable")


def write_atomically(path: str, text: str) -> None:
    """Write beside the target and rename (a collector never reads half a file). A symlink's target is what is
    replaced, not the link; what is not a regular file (/dev/stdout, a FIFO, a device) is written through, as a
    shell redirect would: renaming over it would replace the device node itself."""
    path = os.path.realpath(path)
    if os.path.exists(path) and not os.path.isfile(path):
        with open(path, "w", encoding="utf-8") as fh:
            fh.write(text)
        return
    tmp = f"{path}.tmp.{os.getpid()}"
    try:
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


async def _wait_with_progress(eps: list[Endpoint], opts: Any, wait: float, quiet: bool) -> list[Any]:
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from .check import wait_all

    with Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(),
                  console=err, transient=True, disable=quiet or not err.is_terminal) as progress:
        tasks = {e.label: progress.add_task(escape(f"{e.label}: waiting"), total=None) for e in eps}

        def on_attempt(ep: Endpoint, report: Any, delay: float) -> None:
            fail = report.first_failure
            state = "healthy" if report.healthy else f"{fail.name}: {fail.reason}" if fail else "?"
            progress.update(tasks[ep.label], description=escape(f"{ep.label}: attempt {report.attempts}: {state}"
                                                                + (f" (next in {delay:.1f}s)" if delay else "")))
            if not err.is_terminal and not quiet and delay:
                err.print(f"{ep.label}: attempt {report.attempts}: {state}; retry in {delay:.1f}s",
                          markup=False, highlight=False)

        return await wait_all(eps, opts, wait, on_attempt)
