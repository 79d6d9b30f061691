"""The Hugging Face token: ``--hf-token-file``, else huggingface_hub's order (``HF_TOKEN``,
``HUGGING_FACE_HUB_TOKEN``, the file at ``HF_TOKEN_PATH``, else ``$HF_HOME/token``). Checked as huggingface_hub
reads it before anything sends it; messages name the file, never its content; a file readable by others is a
warning."""

from __future__ import annotations

import os
import stat
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from ...errors import ConfigError

TOKEN_ENVS = ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN")  # huggingface_hub: HF_TOKEN wins, the old name second


@dataclass(frozen=True)
class TokenSource:
    """Where the token comes from (never the token itself)."""

    file: str | None = None
    env: str | None = None
    origin: str = ""  # words for the token row: "file ~/.cache/huggingface/token (0600)", "$HF_TOKEN"
    warning: str = ""  # e.g. a token file readable by others


def _hf_home(environ: Mapping[str, str]) -> Path:
    """huggingface_hub's HF_HOME: $HF_HOME, else $XDG_CACHE_HOME/huggingface, else ~/.cache/huggingface."""
    raw = environ.get("HF_HOME") or os.path.join(environ.get("XDG_CACHE_HOME") or os.path.join("~", ".cache"),
                                                 "huggingface")
    return Path(os.path.expanduser(os.path.expandvars(raw)))


TOKEN_FILE_MAX = 64 * 1024  # a token is ~40 bytes; a bigger file is the wrong file (never read whole)


def file_source(path: str, origin: str) -> TokenSource:
    """Check a token file as huggingface_hub reads it (text, surrounding whitespace stripped, empty = no
    token) before anything sends it; every message names the file, never its content."""
    p = Path(path)
    try:
        st = p.stat()
        if not stat.S_ISREG(st.st_mode):  # a FIFO or /dev/zero would block or never end
            kind = "a directory" if stat.S_ISDIR(st.st_mode) else "not a regular file"
            raise ConfigError(f"{origin}: token file {path} is {kind}")
        with p.open("rb") as fh:
            data = fh.read(TOKEN_FILE_MAX + 1)
    except OSError as exc:
        raise ConfigError(f"{origin}: token file {path} cannot be read: {exc.strerror or exc}") from None
    if len(data) > TOKEN_FILE_MAX:
        raise ConfigError(f"{origin}: token file {path} is over {TOKEN_FILE_MAX // 1024} KiB: not a token file")
    try:
        text = data.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise ConfigError(f"{origin}: token file {path} is not UTF-8 text (expected one hf_... token)") from None
    if not text:
        raise ConfigError(f"{origin}: token file {path} is empty")
    if any(ch.isspace() for ch in text):
        raise ConfigError(f"{origin}: token file {path} holds more than one word (expected one hf_... token)")
    if not text.isascii() or not text.isprintable():
        raise ConfigError(f"{origin}: token file {path} holds non-ASCII or control characters (a byte-order "
                          "mark?): a token is ASCII, expected one hf_... token")
    mode = stat.S_IMODE(st.st_mode)
    warning = ""
    if mode & 0o077:
        who = "group and others" if mode & 0o070 and mode & 0o007 else "others" if mode & 0o007 else "its group"
        warning = f"token file {path} is readable by {who} (mode {mode:04o}): chmod 600 {path}"
    return TokenSource(file=str(p), origin=f"file {path} ({mode:04o})", warning=warning)


def resolve_token(explicit: str | None, environ: Mapping[str, str]) -> TokenSource:
    """``--hf-token-file``, else huggingface_hub's own order (utils/_auth.py ``get_token``): ``HF_TOKEN``,
    ``HUGGING_FACE_HUB_TOKEN``, the file at ``HF_TOKEN_PATH`` (default ``$HF_HOME/token``)."""
    if explicit:
        return file_source(explicit, "--hf-token-file")
    for name in TOKEN_ENVS:
        if environ.get(name, "").strip():
            return TokenSource(env=name, origin=f"${name}")
    if environ.get("HF_TOKEN_PATH"):
        path = os.path.expanduser(os.path.expandvars(environ["HF_TOKEN_PATH"]))
        if not Path(path).exists():
            raise ConfigError(f"HF_TOKEN_PATH={environ['HF_TOKEN_PATH']} does not exist (and HF_TOKEN is not set)")
        return file_source(path, "HF_TOKEN_PATH")
    stored = _hf_home(environ) / "token"
    if stored.exists():
        return file_source(str(stored), "huggingface_hub's stored token")
    raise ConfigError("hf: no Hugging Face token: pass --hf-token-file FILE, set HF_TOKEN or HF_TOKEN_PATH, "
                      f"or run `hf auth login` (stores {stored})")


