"""Provider choice: a suffix on the model (``org/model:together``, ``:fastest``, ``:cheapest``, ``:preferred``;
none is ``auto``, the router's default), and ``--providers``."""

from __future__ import annotations

import re

from ...errors import ConfigError

AUTO = "auto"
POLICIES = ("fastest", "cheapest", "preferred")
_CHOICE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")


def split_choice(model: str) -> tuple[str, str]:
    """``org/m:together`` -> (``org/m``, ``together``); ``org/m`` -> (``org/m``, ``auto``)."""
    base, sep, suffix = model.rpartition(":")
    if sep and base and "/" not in suffix:
        return base, suffix
    return model, AUTO


def with_choice(base: str, choice: str) -> str:
    return base if choice == AUTO else f"{base}:{choice}"


def parse_providers(text: str) -> tuple[str, ...]:
    """``auto,together,novita`` -> a tuple of choices; a bad item is a config error naming the flag."""
    items = [p.strip().lower() for p in text.split(",")]
    if not all(items):
        raise ConfigError(f"--providers {text!r}: empty item (write e.g. auto,together,novita)")
    for p in items:
        if not _CHOICE.match(p):
            raise ConfigError(f"--providers: {p!r} is not a provider name (lowercase letters, digits, '-', '.')")
    dup = sorted({p for p in items if items.count(p) > 1})
    if dup:
        raise ConfigError(f"--providers: {', '.join(dup)} given twice")
    return tuple(items)




def check_choice(choice: str) -> None:
    if not _CHOICE.match(choice):
        raise ConfigError(f"--model: {choice!r} is not a provider choice (a provider name or "
                          f"{', '.join(POLICIES)})")
