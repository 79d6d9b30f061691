"""Console script ``lab-report``: the per-host result folders of a deploy (``<results>/<host>/healthcheck.json``,
``bench.json``, ``host.json``) -> one page, one JSON document and JUnit XML for the whole lab
(:mod:`healthchecks.lab_report`). ``site.yml`` and the pyinfra deploy run it last.

Exit codes: 0 every host healthy (or not verified, e.g. reboot pending), 1 a host or engine unhealthy or a host
without results, 2 usage, unreadable results folder or an output that cannot be written.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from .. import __version__
from ..errors import ConfigError
from .common import EXIT_FAILED, EXIT_OK, Parser, fail, output_file, say


def _host(text: str) -> str:
    """A host name as a folder of the results (inventory_hostname): no path separators, not . or .."""
    import argparse

    name = text.strip()
    if not name or name in (".", "..") or "/" in name or "\0" in name:
        raise argparse.ArgumentTypeError(f"{text!r} is not a host name (a folder name of the results)")
    return name


def _failed(text: str) -> tuple[str, str]:
    import argparse

    host, sep, why = text.partition("=")
    if not sep or not why.strip():
        raise argparse.ArgumentTypeError(f"{text!r}: expected HOST=WHY")
    return _host(host), why.strip()


def main(argv: Sequence[str] | None = None) -> int:
    p = Parser(prog="lab-report", description="One report for the whole lab from the per-host result folders: "
                "every host x engine healthy or why not, GPU residency and memory, capacity at the SLO where a "
                "sweep ran, driver and engine versions, reboot pending, the gateway's routes; a static page, "
                "JSON and JUnit XML. Exit 0 all healthy, 1 a host or engine unhealthy or without results, "
                "2 usage or a file that cannot be read or written.")
    p.add_argument("results", metavar="DIR", help="folder with one sub-folder of results per host")
    p.add_argument("--html", metavar="FILE", help="the page (default DIR/lab.html)")
    p.add_argument("--json", metavar="FILE", dest="json_path", help="the JSON document (default DIR/lab.json)")
    p.add_argument("--junit", metavar="FILE", help="JUnit XML, one testcase per host x engine "
                   "(default DIR/lab-junit.xml)")
    p.add_argument("--host", metavar="NAME", type=_host, action="append", default=[],
                   help="a host that must appear (no results of its own: shown as such); repeatable")
    p.add_argument("--failed", metavar="HOST=WHY", type=_failed, action="append", default=[],
                   help="a host the deploy failed on, and why; repeatable")
    p.add_argument("--quiet", action="store_true", help="print only the paths written")
    p.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    a = p.parse_args(argv)
    from .. import lab_report as lr

    results = Path(a.results)
    outputs = {"html": ("--html", a.html or str(results / lr.OUTPUTS["html"])),
               "json": ("--json", a.json_path or str(results / lr.OUTPUTS["json"])),
               "junit": ("--junit", a.junit or str(results / lr.OUTPUTS["junit"]))}
    try:
        if not results.is_dir():
            raise ConfigError(f"results folder {results} "
                              f"{'is not a directory' if results.exists() else 'does not exist'}")
        for flag, path in outputs.values():
            output_file(flag, path, suffixes={"--html": (".html", ".htm"), "--json": (".json",),
                                              "--junit": (".xml",)}[flag])
        try:
            rep = lr.collect(results, hosts=a.host, failed=dict(a.failed))
        except OSError as exc:
            raise ConfigError(f"results folder {results}: cannot be read: {exc.strerror or exc}") from None
        if not rep.hosts:
            raise ConfigError(f"no host results in {results} (no sub-folder holds {', '.join(lr.HOST_FILES)}) "
                              "and no --host given")
        lr.write(rep, {k: (flag, Path(path)) for k, (flag, path) in outputs.items()})
    except ConfigError as exc:
        return fail("lab-report", exc)
    if not a.quiet:
        for h in rep.hosts:
            say(f"{h.name}: {h.state}" + (f": {h.why}" if h.why else "")
                + "".join(f"\n  {r.title}: {'healthy' if r.healthy else r.why}" for r in h.engines))
    for _, path in outputs.values():
        say(f"wrote {path}")
    return EXIT_OK if rep.healthy else EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
