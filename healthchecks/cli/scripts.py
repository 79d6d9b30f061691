"""The console scripts' entry points (pyproject ``[project.scripts]``): each runs its ``main`` through
:func:`.common.console_script`, so that standard output or error that cannot be written (a full disk, a closed
pipe) is one line or the quiet end of a closed pipe, never a traceback. Imports are lazy: ``prepare-model`` runs
in a Python that has only the standard library and torch."""

from __future__ import annotations

from collections.abc import Sequence

from .common import console_script


def healthcheck(argv: Sequence[str] | None = None) -> int:
    from .healthcheck import main

    return console_script("healthcheck", main, argv)


def smoke_bench(argv: Sequence[str] | None = None) -> int:
    from .smoke_bench import main

    return console_script("smoke-bench", main, argv)


def gpu_report(argv: Sequence[str] | None = None) -> int:
    from .gpu_report import main

    return console_script("gpu-report", main, argv)


def lab_report(argv: Sequence[str] | None = None) -> int:
    from .lab_report import main

    return console_script("lab-report", main, argv)


def prepare_model(argv: Sequence[str] | None = None) -> int:
    from .prepare_model import main

    return console_script("prepare-model", main, argv)


def compose_preflight(argv: Sequence[str] | None = None) -> int:
    from ..preflight import main

    return console_script("compose-preflight", main, argv)
