"""Whole numbers in text other tools wrote (.env values, compose ports, nvidia-smi CSV, /proc, docker top).

``str.isdigit`` accepts "²" and full-width digits, which ``int`` (and compose, Docker, the engines) refuse, and
``int`` raises on a value of thousands of digits: these read ASCII digits only, of bounded length, else None.
"""

from __future__ import annotations

import re


def ascii_int(value: str, max_digits: int = 12) -> int | None:
    """``value`` as a whole number written in ASCII digits, with an optional leading ``-``; else None."""
    return int(value) if re.fullmatch(rf"-?[0-9]{{1,{max_digits}}}", value) else None


def ascii_uint(value: str, max_digits: int = 12) -> int | None:
    """``value`` as a whole number >= 0 written in ASCII digits (no sign); else None."""
    return int(value) if re.fullmatch(rf"[0-9]{{1,{max_digits}}}", value) else None
