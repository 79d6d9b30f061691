"""The words every check speaks: a row's status (PASS / FAIL / WARN / SKIP), a verdict (status, one-line reason)
and a log signature (a line in an engine's log that names a cause, with its fix).

A leaf: imports nothing of the kit, so engines, residency, diagnose and check can all use it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

PASS, FAIL, WARN, SKIP = "pass", "fail", "warn", "skip"

Verdict = tuple[str, str]  # (status, one-line reason)


@dataclass(frozen=True)
class Signature:
    """A line in an engine's log that names a cause, with the fix a person should apply."""

    name: str
    pattern: re.Pattern[str]
    fix: str


__all__ = ["FAIL", "PASS", "SKIP", "WARN", "Signature", "Verdict"]
