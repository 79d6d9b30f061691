"""The rich consoles of ``healthcheck`` and ``smoke-bench`` (tables, progress); other scripts print plain lines
through :func:`.common.say`."""

from __future__ import annotations

import os

from rich.console import Console

out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)
UNSQUEEZED = 10_000  # columns for tables sent to a pipe or a log: each table takes only the width it needs


def say(console: Console, text: str) -> None:
    console.print(text, markup=False, highlight=False)


def table_console() -> Console:
    """Where the tables go: the terminal's console (rich fits them to the window), or, when stdout is a pipe
    or a file, a console on the same stream as wide as any table needs, so that no label or figure is cut to
    ``vllm@127.0.0…`` by the 80 columns rich assumes without a terminal (``print(width=...)`` cannot go past
    the console's own width). COLUMNS, when set, still wins, as rich's own setting."""
    if out.is_terminal or os.environ.get("COLUMNS"):
        return out
    return Console(file=out.file, width=UNSQUEEZED, soft_wrap=True, no_color=out.no_color)
