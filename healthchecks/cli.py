"""Console script ``healthcheck`` and what both CLIs share (argv conventions, endpoint resolution, exit
codes); ``smoke-bench`` lives in ``bench_cli.py``. The CLIs are the only modules that print.

Exit codes: 0 healthy / benchmark done, 1 an endpoint unhealthy or failing, 2 usage or config error.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Sequence
from dataclasses import replace
from typing import Any, NoReturn

from rich.console import Console
from rich.table import Table

from . import __version__
from .endpoints import (
    Endpoint,
    default_endpoints,
    from_compose,
    from_inventory,
    parse_endpoint,
    with_defaults,
)
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


def _positive(kind: type[float] | type[int]) -> Any:
    def conv(text: str) -> float | int:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if value <= 0:
            raise argparse.ArgumentTypeError(f"{text!r} must be greater than 0")
        return value
    return conv


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("endpoints", nargs="*", metavar="ENDPOINT",
                   help=f"ENGINE=URL ({', '.join(NAMES)}) or a bare URL to probe; "
                        "default: the kit's ports on 127.0.0.1")
    p.add_argument("--compose", metavar="FILE", help="discover endpoints from a compose file or project dir")
    p.add_argument("--inventory", metavar="FILE", help="discover endpoints from an Ansible inventory")
    p.add_argument("--group", metavar="NAME", help="with --inventory: only hosts of this group")
    p.add_argument("--host", metavar="NAME", help="with --inventory: only this inventory host")
    p.add_argument("--model", metavar="NAME", help="the model every endpoint must serve")
    p.add_argument("--timeout", type=_positive(float), default=30.0, metavar="SECONDS",
                   help="per-request timeout (default 30)")
    p.add_argument("--api-key-file", metavar="FILE", help="file holding the API key (never pass keys in argv)")
    p.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
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


def resolve_endpoints(args: argparse.Namespace) -> list[Endpoint]:
    eps: list[Endpoint] = [parse_endpoint(s) for s in args.endpoints]
    if args.compose:
        eps += deployed_only(from_compose(args.compose))
    if args.inventory:
        eps += from_inventory(args.inventory, args.group, args.host)
    if not eps:
        eps = default_endpoints()
    if args.api_key_file:
        from .protocols import read_api_key

        read_api_key(args.api_key_file)  # fail early, as a config error, if unreadable
    eps = with_defaults(eps, args.model, args.api_key_file)
    for engine in ENGINES.values():
        eps = engine.configure(args, eps)
    return eps


# -- healthcheck ---------------------------------------------------------------------------------------
def healthcheck_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="healthcheck", description="Verify LLM endpoints: liveness, readiness, a real completion "
                "(streaming and not), GPU residency, auth and metrics. Exit 0 healthy, 1 unhealthy, 2 usage.")
    _common(p)
    p.add_argument("--wait", type=_positive(float), metavar="SECONDS",
                   help="poll with backoff until healthy or SECONDS pass (model loads can take minutes)")
    p.add_argument("--json", action="store_true", help="print one JSON document")
    p.add_argument("--max-tokens", type=_positive(int), default=8, help="tokens per test completion")
    gpu = p.add_mutually_exclusive_group()
    gpu.add_argument("--expect-gpu", dest="expect_gpu", action="store_true", default=None,
                     help="fail when Ollama runs the model on the CPU (size_vram 0)")
    gpu.add_argument("--no-expect-gpu", dest="expect_gpu", action="store_false",
                     help="CPU-only hosts: system-RAM residency is fine")
    p.add_argument("--no-diagnose", action="store_true", help="skip docker container diagnosis")
    return p


STATUS_STYLE = {"pass": "green", "fail": "bold red", "warn": "yellow", "skip": "dim"}


def _render(reports: list[Any]) -> None:
    table = Table(title="healthcheck", show_lines=False)
    for col in ("endpoint", "engine", "check", "status", "ms", "reason"):
        table.add_column(col, overflow="fold")
    for r in reports:
        for i, c in enumerate(r.checks):
            table.add_row(r.name if i == 0 else "", (r.engine or "?") if i == 0 else "", c.name,
                          f"[{STATUS_STYLE[c.status]}]{c.status}[/]",
                          "" if c.latency_ms is None else f"{c.latency_ms:.0f}", c.reason)
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
            err.print(f"UNHEALTHY {r.name}: {fail.name if fail else '?'}: {fail.reason if fail else '?'}",
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
    if args.expect_gpu is not None:
        eps = [replace(e, expect_gpu=args.expect_gpu) for e in eps]
    opts = Options(timeout=args.timeout, max_tokens=args.max_tokens, diagnose=not args.no_diagnose)
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
    return EXIT_OK if all(r.healthy for r in reports) else EXIT_UNHEALTHY


async def _wait_with_progress(eps: list[Endpoint], opts: Any, wait: float, quiet: bool) -> list[Any]:
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from .check import wait_all

    with Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(),
                  console=err, transient=True, disable=quiet or not err.is_terminal) as progress:
        tasks = {e.label: progress.add_task(f"{e.label}: waiting", total=None) for e in eps}

        def on_attempt(ep: Endpoint, report: Any, delay: float) -> None:
            fail = report.first_failure
            state = "healthy" if report.healthy else f"{fail.name}: {fail.reason}" if fail else "?"
            progress.update(tasks[ep.label], description=f"{ep.label}: attempt {report.attempts}: {state}"
                            + (f" (next in {delay:.1f}s)" if delay else ""))
            if not err.is_terminal and not quiet and delay:
                err.print(f"{ep.label}: attempt {report.attempts}: {state}; retry in {delay:.1f}s",
                          markup=False, highlight=False)

        return await wait_all(eps, opts, wait, on_attempt)
