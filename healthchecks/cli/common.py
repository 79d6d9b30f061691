"""What every console script shares: the argument parser, exit codes, number and path arguments, output files
written whole, and plain one-line messages.

Standard library and :mod:`healthchecks.errors` only, so that ``prepare-model`` runs in any Python with torch.

Exit codes: 0 success, 1 an endpoint unhealthy / a run or check failed, 2 usage, configuration, input or output
error (a file or standard output that cannot be written), 130 interrupted (SIGINT), 143 terminated (SIGTERM);
standard output closed by its reader (``| head -c1``): the quiet end coreutils have, killed by SIGPIPE (141 in a
shell).
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import math
import os
import signal
import stat
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn, TextIO

from ..errors import ConfigError

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED, EXIT_TERMINATED = 0, 1, 2, 130, 143
EXIT_UNHEALTHY = EXIT_FAILED  # healthcheck's name for it


def say(text: str, *, err: bool = False) -> None:
    """One plain line (no markup) to stdout, or to stderr with ``err=True``."""
    print(text, file=sys.stderr if err else sys.stdout, flush=err)


def fail(prog: str, message: object, code: int = EXIT_USAGE) -> int:
    """The one-line error of a console script, ``PROG: MESSAGE`` on stderr; returns ``code`` for ``main``."""
    say(f"{prog}: {message}", err=True)
    return code


class Parser(argparse.ArgumentParser):
    """argparse that reports usage errors in one line with exit 2 (its default), without the usage dump. Building
    one makes stdout and stderr safe for any text (:func:`safe_output`)."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        safe_output()
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]

    def error(self, message: str) -> NoReturn:
        say(f"{self.prog}: error: {message} (see --help)", err=True)
        sys.exit(EXIT_USAGE)


def safe_output() -> None:
    """A terminal or pipe that cannot show a character (LANG=C, PYTHONIOENCODING=ascii) gets an escape for
    it, never a UnicodeEncodeError traceback: server text, paths and host names are not ASCII-only."""
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(AttributeError, ValueError, OSError):
            stream.reconfigure(errors="backslashreplace")  # type: ignore[union-attr]


# -- numbers: one reader; each converter says in one line what it wants, never nan; inf only where it means something
def number(text: str) -> float:
    """A number as ``float`` reads it (``1e3``, `` 2 ``, ``inf``); ``nan`` never."""
    try:
        value = float(text.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if math.isnan(value):
        raise argparse.ArgumentTypeError(f"{text!r} is not a number")
    return value


def positive(kind: type[float] | type[int], *, finite: bool = True) -> Callable[[str], float | int]:
    """An argparse type: a number > 0. ``inf`` only with ``finite=False`` (e.g. a request rate, where it means
    "all at once"). Integers may be written as ``1e3`` or ``1000.0``."""
    def conv(text: str) -> float | int:
        value = number(text)
        if math.isinf(value) and (finite or kind is int or value < 0):
            raise argparse.ArgumentTypeError(f"{text!r} must be a finite number")
        if value <= 0:
            raise argparse.ArgumentTypeError(f"{text!r} must be greater than 0")
        if kind is int:
            if not value.is_integer():
                raise argparse.ArgumentTypeError(f"{text!r} is not a whole number")
            return int(value)
        return value
    return conv


def integer(text: str) -> int:
    value = number(text)
    if not math.isfinite(value) or value != int(value):
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number")
    return int(value)


def count(text: str) -> int:
    """A positive whole number; ``1e3`` is 1000."""
    value = integer(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be at least 1")
    return value


def count0(text: str) -> int:
    """A whole number >= 0."""
    value = number(text)
    if not math.isfinite(value) or value != int(value) or value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be a whole number >= 0")
    return int(value)


def rate(text: str) -> float:
    """Greater than 0; ``inf`` allowed (all at once, or constant gaps for --burstiness)."""
    value = number(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be greater than 0")
    return value


def seconds(text: str) -> float:
    """A finite duration greater than 0."""
    value = number(text)
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be a finite number of seconds greater than 0")
    return value


def ratio(text: str) -> float:
    value = number(text)
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be in [0, 1)")
    return value


def fraction(text: str) -> float:
    value = number(text)
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be in (0, 1]")
    return value


def share(text: str) -> float:
    """A share from 0 to 1, both included (``0.05`` is 5%)."""
    value = number(text)
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be a share from 0 to 1 (0.05 is 5%)")
    return value


def nonneg(text: str) -> float:
    value = number(text)
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be a finite number >= 0")
    return value


# -- paths -----------------------------------------------------------------------------------------------------
def output_file(flag: str, path: str, *, suffixes: tuple[str, ...] = (), make_folders: bool = False) -> None:
    """A file the run will write, checked before any request (ConfigError naming ``flag``): the right suffix,
    not a directory, writable; its folder must exist, or with ``make_folders`` (created at write time) the
    nearest existing folder must be writable."""
    if "\0" in path:
        raise ConfigError(f"{flag} {path!r}: a file name cannot hold a NUL character")
    p = Path(path)
    if suffixes and p.suffix.lower() not in suffixes:
        raise ConfigError(f"{flag} {path}: expected a file ending in {' or '.join(suffixes)}")
    if p.is_dir():
        raise ConfigError(f"{flag} {path} is a directory, not a file")
    if p.exists() and not os.access(p, os.W_OK):
        raise ConfigError(f"{flag} {path}: not writable")
    folder = Path(os.path.abspath(path)).parent
    if not make_folders and not folder.is_dir():
        raise ConfigError(f"{flag} {path}: directory {folder} does not exist")
    while not folder.exists():
        folder = folder.parent
    if not folder.is_dir():
        raise ConfigError(f"{flag} {path}: {folder} is not a directory")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise ConfigError(f"{flag} {path}: cannot write in {folder}")


def write_whole(path: str | Path, text: str, *, in_place_fallback: bool = False) -> None:
    """Write ``text`` so that no reader ever sees half of it: beside the target, then renamed over it (keeping
    an existing file's mode). A symlink's target is what is replaced, not the link; what is not a regular file
    (/dev/stdout, a FIFO, a device) is written through, as a shell redirect would. With ``in_place_fallback``,
    a folder that refuses the temporary file gets the file rewritten in place. Raises OSError."""
    target = os.path.realpath(path)
    if os.path.exists(target) and not os.path.isfile(target):
        with open(target, "w", encoding="utf-8") as fh:
            fh.write(text)
        return
    tmp = f"{target}.tmp.{os.getpid()}"
    try:
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(text)
        with contextlib.suppress(FileNotFoundError):
            os.chmod(tmp, stat.S_IMODE(os.stat(target).st_mode))
        os.replace(tmp, target)
    except OSError:
        if not in_place_fallback:
            raise
        with open(target, "w", encoding="utf-8") as fh:
            fh.write(text)
    finally:
        with contextlib.suppress(OSError):
            if os.path.exists(tmp):
                os.unlink(tmp)


# -- standard output and error that cannot be written ----------------------------------------------------------
class StreamFailed(Exception):
    """A write to standard output or error failed; ``name`` says which, ``cause`` why."""

    def __init__(self, name: str, cause: OSError) -> None:
        super().__init__(f"{name}: {cause.strerror or cause}")
        self.name, self.cause = name, cause


class _Named:
    """sys.stdout / sys.stderr that say which they are when a write fails (a full disk, a closed pipe), so the
    console script can name the destination; everything else is the stream's own."""

    def __init__(self, stream: TextIO, name: str) -> None:
        self._stream, self._name = stream, name

    def write(self, text: str) -> int:
        try:
            return self._stream.write(text)
        except OSError as exc:
            raise StreamFailed(self._name, exc) from exc

    def flush(self) -> None:
        try:
            self._stream.flush()
        except OSError as exc:
            raise StreamFailed(self._name, exc) from exc

    def __getattr__(self, attr: str) -> Any:
        return getattr(self._stream, attr)


def _to_devnull(stream: TextIO) -> None:
    """Point the stream's descriptor at /dev/null, so that the interpreter's last flush finds nothing to fail."""
    with contextlib.suppress(OSError, ValueError, AttributeError):
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, stream.fileno())
        os.close(null)


def console_script(prog: str, main: Callable[[Any], int],
                   argv: Sequence[str] | None = None) -> int:
    """Run a console script's ``main`` so that its standard output and error are never a traceback: a closed
    pipe ends quietly, killed by SIGPIPE as coreutils are (``smoke-bench ... | head -c1``; 141 in a shell); any
    other failure (a full disk, an I/O error) is one line ``PROG: cannot write to standard output: CAUSE`` on
    stderr and exit 2. Output files are each script's own (one line naming the flag and the file)."""
    out, err = sys.stdout, sys.stderr
    if out is not None:
        sys.stdout = _Named(out, "standard output")  # type: ignore[assignment]
    if err is not None:
        sys.stderr = _Named(err, "standard error")  # type: ignore[assignment]
    try:
        try:
            code = main(argv)
        except SystemExit as exc:  # argparse: --help, usage errors
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else EXIT_USAGE)
            if not isinstance(exc.code, int | None):
                say(str(exc.code), err=True)
        sys.stdout.flush()
        return code
    except StreamFailed as exc:
        failed = out if exc.name == "standard output" else err
        if failed is not None:
            _to_devnull(failed)
        if exc.cause.errno == errno.EPIPE:
            if hasattr(signal, "SIGPIPE"):
                with contextlib.suppress(StreamFailed, OSError):
                    sys.stderr.flush()
                signal.signal(signal.SIGPIPE, signal.SIG_DFL)
                os.kill(os.getpid(), signal.SIGPIPE)
            return 128 + 13
        if exc.name == "standard output":
            with contextlib.suppress(StreamFailed, OSError):
                say(f"{prog}: cannot write to standard output: {exc.cause.strerror or exc.cause}", err=True)
        return EXIT_USAGE
    finally:
        sys.stdout, sys.stderr = out, err
