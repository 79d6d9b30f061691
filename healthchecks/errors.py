"""The kit's one exception tree. Every error the CLIs turn into a message derives from :class:`KitError`.

    KitError                 one line, secret-free: ``str(exc)`` is what the CLI prints
    ├── ConfigError          bad user input (argv, compose files, .env, inventory, settings): exit 2
    │   └── InputError       an input file that cannot be used (gpu-report's samples, a GGUF): exit 2
    │       └── BadGGUF      not a complete, well-formed GGUF file (prepare-model)
    └── ProtocolError        a server or network problem (status = HTTP status when there was one): exit 1

Neither derives from ``ValueError``: a stray ``ValueError`` is a bug, not a user error, and must not be
mistaken for one.

:func:`unexpected` is the one line for an exception nobody expected (a bug, a library's surprise).

Secrets: every key the kit reads (:func:`register_secret`, called by the key readers) is replaced by ``***`` in
every KitError's reason (:func:`redact`): a server that echoes the Authorization header in its error page
("Incorrect API key provided: Bearer sk-...") cannot make the kit print or save the key.
"""

from __future__ import annotations

_SECRETS: set[str] = set()


def register_secret(value: str | None) -> None:
    """Remember a secret the kit holds (an API key, a token) so that :func:`redact` hides it everywhere."""
    if value and len(value) >= 4:  # a 1-3 character "key" would redact ordinary words
        _SECRETS.add(value)


def redact(text: str) -> str:
    """``text`` with every registered secret replaced by ``***`` (longest first: no half-hidden key)."""
    for secret in sorted(_SECRETS, key=len, reverse=True):
        if secret in text:
            text = text.replace(secret, "***")
    return text


class KitError(Exception):
    """Base of every error the kit reports in one line."""

    def __init__(self, reason: str) -> None:
        reason = redact(reason)
        super().__init__(reason)
        self.reason = reason


class ConfigError(KitError):
    """Bad user input (arguments, compose file, .env, inventory, settings): exit code 2."""


class InputError(ConfigError):
    """An input file that cannot be used, in one line naming it (exit 2)."""


class BadGGUF(InputError):
    """The input is not a complete, well-formed GGUF file (exit 2, one line naming it)."""


class ProtocolError(KitError):
    """A server or network problem, described in one line (never a traceback, never a secret)."""

    def __init__(self, reason: str, status: int | None = None) -> None:
        super().__init__(reason)
        self.status = status


def unexpected(exc: BaseException) -> str:
    """One line for an exception nobody expected (a bug or a library's surprise): its type and first line,
    e.g. ``OverflowError: getsockaddrarg: port must be 0-65535.``"""
    text = str(exc).strip()
    first = " ".join(text.splitlines()[0].split())[:160] if text else ""
    return f"{type(exc).__name__}{': ' + first if first else ''}"
