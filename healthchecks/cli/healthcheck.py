"""Console script ``healthcheck``: argv -> endpoints -> the check sequence -> a table, JSON, JUnit XML,
Prometheus textfile metrics.

Exit codes: 0 every endpoint healthy, 1 an endpoint unhealthy, 2 usage or config error, 130 interrupted.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from rich.markup import escape
from rich.table import Table
from rich.text import Text

from ..endpoints.url import Endpoint
from ..errors import ConfigError
from .common import EXIT_INTERRUPTED, EXIT_OK, EXIT_UNHEALTHY, EXIT_USAGE, Parser, output_file, positive, write_whole
from .console import err, out, table_console
from .endpoint_args import add_endpoint_arguments, resolve_endpoints


def healthcheck_parser() -> argparse.ArgumentParser:
    p = Parser(prog="healthcheck", description="Verify LLM endpoints: liveness, readiness, a real completion "
                "(streaming and not), structured output or embeddings, GPU residency, TLS certificate, auth and "
                "metrics.")
    add_endpoint_arguments(p)
    p.add_argument("--wait", type=positive(float), metavar="SECONDS",
                   help="poll with backoff until healthy or SECONDS pass (model loads can take minutes)")
    p.add_argument("--json", action="store_true", help="print one JSON document")
    p.add_argument("--junit", metavar="FILE", help="also write JUnit XML (one testcase per endpoint and check)")
    p.add_argument("--prometheus", metavar="FILE",
                   help="also write node-exporter textfile metrics (up and latency per endpoint and check); "
                        "written atomically, for the textfile collector directory")
    p.add_argument("--no-capabilities", action="store_true",
                   help="skip the capability rows (structured output)")
    p.add_argument("--max-tokens", type=positive(int), default=8, metavar="N",
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
    from ..check import printable

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
    table_console().print(table)  # on a pipe or in a log: as wide as the rows need, none cut to 80 columns
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


def main(argv: Sequence[str] | None = None) -> int:
    args = healthcheck_parser().parse_args(argv)
    from ..check import Options, check_all

    try:
        eps = resolve_endpoints(args)
    except ConfigError as exc:
        err.print(f"healthcheck: {exc}", markup=False, highlight=False)
        return EXIT_USAGE
    try:
        for flag, path in (("--junit", args.junit), ("--prometheus", args.prometheus)):
            if path:
                output_file(flag, path)
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
        return EXIT_INTERRUPTED
    if args.json:
        doc = {"healthy": all(r.healthy for r in reports), "endpoints": [r.to_dict() for r in reports]}
        print(json.dumps(doc, indent=2))
    else:
        _render(reports)
    from ..check import junit_xml, prometheus_text

    code = None
    for flag, path, text in (("--junit", args.junit, junit_xml), ("--prometheus", args.prometheus, prometheus_text)):
        if not path:
            continue
        try:
            write_whole(path, text(reports))
        except OSError as exc:  # the results above are printed; the file is what failed (the others are written)
            err.print(f"healthcheck: {flag} {path}: cannot write: {exc.strerror or exc}", markup=False,
                      highlight=False)
            code = EXIT_USAGE
    if code is not None:
        return code
    return EXIT_OK if all(r.healthy for r in reports) else EXIT_UNHEALTHY


async def _wait_with_progress(eps: list[Endpoint], opts: Any, wait: float, *, quiet: bool) -> list[Any]:
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from ..check import wait_all

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
