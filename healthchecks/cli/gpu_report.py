"""Console script ``gpu-report``: per-engine GPU memory from samples taken ON a host while its benchmark ran
(the samples and their reading: :mod:`healthchecks.gpu.samples`). Prints each engine's peak MiB per GPU and with
``--bench-json`` writes them into that host's benchmark report, whole.

Exit codes: 0 done, 1 ``--expect-gpu`` and an engine held no GPU memory, 2 usage or unreadable input.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .. import __version__
from ..errors import InputError
from ..gpu.samples import merge_into_bench, read_bench, read_pids, read_text, summarise
from .common import EXIT_FAILED, EXIT_OK, Parser, fail, say, write_whole


def write_bench(path: Path, bench: dict[str, Any]) -> None:
    """Replace the report's content, all or nothing where its folder is writable (a full disk never leaves
    half a file), else in place."""
    try:
        write_whole(path, json.dumps(bench, indent=2) + "\n", in_place_fallback=True)
    except OSError as exc:
        raise InputError(f"--bench-json {path} cannot be written: {exc.strerror or exc}") from None


def main(argv: Sequence[str] | None = None) -> int:
    p = Parser(prog="gpu-report", description="Per-engine GPU memory from samples recorded on a host "
                "(apps.csv, gpus.csv, pids.json). Exit 0 done, 1 an engine held no GPU memory with "
                "--expect-gpu, 2 usage or unreadable input.")
    p.add_argument("samples", metavar="DIR", help="folder with apps.csv, gpus.csv and pids.json")
    p.add_argument("--bench-json", metavar="FILE", help="smoke-bench JSON to add the figures to (in place)")
    p.add_argument("--expect-gpu", action="store_true", help="exit 1 when an engine held no GPU memory")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    a = p.parse_args(argv)
    d = Path(a.samples)
    try:
        if not d.is_dir():
            raise InputError(f"samples folder {d} {'is not a directory' if d.exists() else 'does not exist'}")
        apps, gpus = read_text(d / "apps.csv", "apps.csv"), read_text(d / "gpus.csv", "gpus.csv")
        pids = read_pids(d / "pids.json")
        bench = read_bench(Path(a.bench_json)) if a.bench_json else None
        result = summarise(apps, gpus, pids)
        if bench is not None:
            merge_into_bench(bench, result)
            write_bench(Path(a.bench_json), bench)
    except InputError as exc:
        return fail("gpu-report", exc)
    if a.json:
        say(json.dumps({e: m.to_dict() for e, m in result.items()}, indent=2))
    else:
        for e, m in sorted(result.items()):
            figures = ", ".join(f"GPU {i}: {v:.0f} MiB (device total peak {m.device_peak_mib.get(i, 0):.0f} MiB)"
                                for i, v in sorted(m.engine_peak_mib.items()))
            say(f"{e}: {figures or m.note}")
    empty = sorted(e for e, m in result.items() if not m.engine_peak_mib)
    if a.expect_gpu and empty:
        return fail("gpu-report", f"no GPU memory held by {', '.join(empty)}: the engine serves from the CPU",
                    EXIT_FAILED)
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
