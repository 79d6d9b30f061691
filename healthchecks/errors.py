"""The kit's one exception tree. Every error the CLIs turn into a message derives from :class:`KitError`.

    KitError                 one line, secret-free: ``str(exc)`` is what the CLI prints
    ├── ConfigError          bad user input (argv, compose files, .env, inventory, settings): exit 2
    └── ProtocolError        a server or network problem (status = HTTP status when there was one): exit 1

Neither derives from ``ValueError``: a stray ``ValueError`` is a bug, not a user error, and must not be
mistaken for one.
"""

from __future__ import annotations


class KitError(Exception):
    """Base of every error the kit reports in one line."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class ConfigError(KitError):
    """Bad user input (arguments, compose file, .env, inventory, settings): exit code 2."""


class ProtocolError(KitError):
    """A server or network problem, described in one line (never a traceback, never a secret)."""

    def __init__(self, reason: str, status: int | None = None) -> None:
        super().__init__(reason)
        self.status = status
