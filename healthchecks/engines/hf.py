"""Hugging Face Inference Providers: the router at ``https://router.huggingface.co/v1`` (OpenAI-compatible chat).

What the router adds to a plain OpenAI-compatible server, and how the kit uses it:

- **Provider choice** is a suffix on the model: ``org/model:together`` (one provider), ``:fastest``,
  ``:cheapest``, ``:preferred`` (the router's policies); no suffix (``auto``) is the router's default,
  ``:fastest``. ``--providers auto,together,novita`` expands one ``hf`` endpoint into one per choice (label
  ``hf/together``, ``Endpoint.meta["provider"]``), so smoke-bench shows them side by side.
- **Who answered**: the ``x-inference-provider`` response header -> ``RequestResult.served_by``.
- **Failover** (``--failover``): each request tries the ``--providers`` choices in order and moves on after a
  timeout, a connection error, 429, 402, 5xx or a model the provider does not serve;
  ``RequestResult.failovers`` counts the moves. **Retries** (``--retries N``, default 0): the same choice again
  after a transient failure (timeout, connection, 429, 5xx) with exponential backoff and jitter;
  ``Retry-After`` is honoured up to the request timeout. Nothing else retries (httpx does not), so a latency
  is never inflated by a hidden retry. TTFT and E2EL run from the first attempt: a failover's cost is
  part of what the user sees.
- **Errors** become one line: the class (invalid token, missing permission, gated model, credits, rate limit,
  model not supported, upstream 5xx, timeout), the router's own words, the fix, and the ``x-request-id``.
- **Token**: ``--hf-token-file``, else huggingface_hub's order (``HF_TOKEN``, ``HUGGING_FACE_HUB_TOKEN``, the
  file at ``HF_TOKEN_PATH``, else ``$HF_HOME/token``). It is only ever sent in the Authorization header;
  every reason is scrubbed of it; a token file readable by others is a warning.
- **Readiness** from ``GET /v1/models``: a model counts as served when at least one of its providers is
  ``live``; the ``providers`` row lists each provider with its status and HF's own probe figures.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import re
import stat
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

from ..errors import ConfigError, ProtocolError
from ..metrics import RequestResult
from ..protocols import Http, describe, one_line, parse_json
from ..protocols import openai as oa
from ..verdicts import FAIL, PASS, WARN, Verdict
from .base import PROMPT, Engine, RequestParams, Spec, Step, add_warning, usage_counts

if TYPE_CHECKING:
    from ..endpoints.url import Endpoint

ROUTER_URL = "https://router.huggingface.co/v1"
AUTO = "auto"
POLICIES = ("fastest", "cheapest", "preferred")
TOKEN_ENVS = ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN")  # huggingface_hub: HF_TOKEN wins, the old name second
_CHOICE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
BACKOFF_BASE_S = 0.5  # first retry waits 0.5 s x jitter, then 1, 2, 4 ... capped
BACKOFF_CAP_S = 8.0


# -- provider choice ------------------------------------------------------------------------------------
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


# -- token ----------------------------------------------------------------------------------------------
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


def _file_source(path: str, origin: str) -> TokenSource:
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
        return _file_source(explicit, "--hf-token-file")
    for name in TOKEN_ENVS:
        if environ.get(name, "").strip():
            return TokenSource(env=name, origin=f"${name}")
    if environ.get("HF_TOKEN_PATH"):
        path = os.path.expanduser(os.path.expandvars(environ["HF_TOKEN_PATH"]))
        if not Path(path).exists():
            raise ConfigError(f"HF_TOKEN_PATH={environ['HF_TOKEN_PATH']} does not exist (and HF_TOKEN is not set)")
        return _file_source(path, "HF_TOKEN_PATH")
    stored = _hf_home(environ) / "token"
    if stored.exists():
        return _file_source(str(stored), "huggingface_hub's stored token")
    raise ConfigError("hf: no Hugging Face token: pass --hf-token-file FILE, set HF_TOKEN or HF_TOKEN_PATH, "
                      f"or run `hf auth login` (stores {stored})")


# -- settings from the command line ---------------------------------------------------------------------
@dataclass(frozen=True)
class Settings:
    """The run's hf flags (the same for every hf endpoint of one run)."""

    providers: tuple[str, ...] = (AUTO,)
    failover: bool = False
    retries: int = 0
    token: TokenSource = field(default_factory=TokenSource)


# -- errors ---------------------------------------------------------------------------------------------
# kind -> (what it is, the fix). ``{model}`` and ``{provider}`` are filled in.
CLASSES: dict[str, tuple[str, str]] = {
    "auth": ("invalid token",
             "create a token at https://huggingface.co/settings/tokens and point --hf-token-file (or HF_TOKEN) at it"),
    "permission": ("token lacks the Inference Providers permission",
                   "edit the fine-grained token at https://huggingface.co/settings/tokens and tick "
                   "'Make calls to Inference Providers'"),
    "gated": ("gated model",
              "accept the model's conditions at https://huggingface.co/{model} with the token's account"),
    "forbidden": ("forbidden", "check the token's account and organisation permissions"),
    "credits": ("credits exhausted",
                "add credits or subscribe at https://huggingface.co/settings/billing, or fail over to a "
                "provider billed elsewhere"),
    "rate_limited": ("rate limited",
                     "lower --concurrency/--request-rate, allow --retries (Retry-After is honoured) or add "
                     "providers with --failover"),
    "model_not_supported": ("model not supported by {provider}",
                            "enable a provider that serves it at https://huggingface.co/settings/inference-providers"
                            " or choose one listed by GET /v1/models"),
    "not_found": ("not found", "the endpoint must be the router's /v1 base (hf=https://router.huggingface.co/v1)"),
    "bad_request": ("request refused", "check the model name and request parameters"),
    "upstream": ("provider failed upstream",
                 "usually transient on the provider's side: allow --retries or add providers with --failover"),
    "timeout": ("timeout", "raise --timeout, or fail over to another provider (--providers ... --failover)"),
    "connection": ("connection failed", "check the network path (proxy, DNS, TLS) to the router"),
    "broken": ("broken answer", "transient on the provider's side: allow --retries or add providers with --failover"),
}
TRANSIENT = frozenset({"timeout", "connection", "rate_limited", "upstream", "broken"})
MOVE_ON = TRANSIENT | {"credits", "model_not_supported"}


@dataclass(frozen=True)
class Failure:
    kind: str
    message: str  # the server's own words (or the transport error), one line
    status: int | None = None
    request_id: str | None = None
    provider: str | None = None  # x-inference-provider of the failed answer, when the router named one
    choice: str = AUTO
    retry_after: float | None = None

    @property
    def transient(self) -> bool:
        return self.kind in TRANSIENT

    @property
    def moves_on(self) -> bool:
        return self.kind in MOVE_ON

    def title(self) -> str:
        what, _ = CLASSES[self.kind]
        target = self.provider or (self.choice if self.choice not in (AUTO, *POLICIES) else "any enabled provider")
        what = what.format(provider=target, model="")
        return f"{what} ({self.status})" if self.status else what

    def fix(self, model: str) -> str:
        return CLASSES[self.kind][1].format(model=split_choice(model)[0], provider=self.provider or self.choice)

    def reason(self, model: str) -> str:
        """One line with the request id: for a check row."""
        rid = self.request_id or "none (no answer)"
        return f"{self.title()}: {self.message}; fix: {self.fix(model)}; x-request-id {rid}"

    def key(self, model: str) -> str:
        """One line without the request id: the benchmark's error class (a Counter key)."""
        where = f" [{self.provider or self.choice}]"
        return f"{self.title()}{where}: {self.fix(model)}"


def _retry_after(headers: httpx.Headers) -> float | None:
    """``Retry-After`` in seconds (delay-seconds form; an HTTP date is taken as 'unknown', as huggingface_hub
    does)."""
    value = (headers.get("retry-after") or "").strip()
    try:
        return max(0.0, float(value)) if value else None
    except ValueError:
        return None


def _server_message(body: str, headers: httpx.Headers) -> tuple[str, str, str]:
    """(message, type, code) from either envelope: ``{"error": {"message", "type", "code"}}`` or
    ``{"error": "..."}`` (also a list of strings, and huggingface_hub's X-Error-Message header)."""
    msg, typ, code = "", "", str(headers.get("x-error-code") or "")
    try:
        obj: Any = parse_json(body, "error")
    except ProtocolError:
        obj = None
    if isinstance(obj, dict):
        err = obj.get("error", obj.get("message", obj.get("detail")))
        if isinstance(err, dict):
            msg = str(err.get("message") or "")
            typ = str(err.get("type") or "")
            code = str(err.get("code") or code)
        elif isinstance(err, list):
            msg = "; ".join(str(e) for e in err)
        elif err is not None:
            msg = str(err)
    elif body.strip():
        low = body.lstrip()[:200].lower()
        msg = "an HTML page from a proxy or gateway" if low.startswith(("<!doctype", "<html")) else body
    msg = msg or str(headers.get("x-error-message") or "") or "(empty body)"
    return one_line(msg, 180), typ, code


def classify(status: int, body: str, headers: httpx.Headers, choice: str = AUTO) -> Failure:
    """An HTTP error answer of the router -> a :class:`Failure`."""
    msg, typ, code = _server_message(body, headers)
    low = f"{msg} {typ} {code}".lower()
    if status == 401:
        kind = "auth"
    elif status == 402:
        kind = "credits"
    elif status == 403:
        if "gated" in low or "restricted" in low or "authorized list" in low or "ask for access" in low:
            kind = "gated"
        elif "permission" in low:
            kind = "permission"
        else:
            kind = "forbidden"
    elif status == 429:
        kind = "rate_limited"
    elif status >= 500:
        kind = "upstream"
    elif code == "model_not_supported" or "not supported" in low:
        kind = "model_not_supported"
    elif status == 404:
        kind = "not_found"
    else:
        kind = "bad_request"
    return Failure(kind, msg, status, headers.get("x-request-id"), headers.get("x-inference-provider"), choice,
                   _retry_after(headers))


def _transport(exc: BaseException, url: str, choice: str) -> Failure:
    if isinstance(exc, TimeoutError | httpx.TimeoutException):
        what = describe(exc, url) if isinstance(exc, httpx.TimeoutException) else "no complete answer in time"
        return Failure("timeout", what, choice=choice)
    if isinstance(exc, httpx.RemoteProtocolError | httpx.ReadError):
        return Failure("broken", describe(exc, url), choice=choice)
    return Failure("connection", describe(exc, url) if isinstance(exc, httpx.HTTPError) else str(exc), choice=choice)


class _Failed(Exception):
    def __init__(self, failure: Failure) -> None:
        super().__init__(failure.kind)
        self.failure = failure


# -- one request through the router ---------------------------------------------------------------------
@dataclass
class Answer:
    text: str = ""
    usage: dict[str, Any] = field(default_factory=dict)
    chunks: int = 0
    first: float | None = None  # perf_counter of the first chunk with choices
    last: float = 0.0
    itl: list[float] = field(default_factory=list)
    served_by: str | None = None
    request_id: str | None = None
    model: str = ""


@dataclass
class Outcome:
    answer: Answer | None
    failure: Failure | None  # the last failure (the one that ended the request, when answer is None)
    failed: list[Failure] = field(default_factory=list)  # every failed attempt, in order
    failovers: int = 0
    retries: int = 0


def _delta_text(ev: dict[str, Any]) -> str | None:
    choices = ev.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        return None
    c = choices[0]
    part = c.get("delta") if isinstance(c.get("delta"), dict) else c.get("message")
    if isinstance(part, dict):
        return str(part.get("content") or part.get("reasoning_content") or part.get("reasoning") or "")
    return str(c.get("text") or "")


async def _exchange(http: Http, body: dict[str, Any], choice: str, headers: Mapping[str, str]) -> Answer:
    """POST /v1/chat/completions once; streamed (SSE) or not. Failures raise :class:`_Failed`. ``headers``:
    the user's extra headers (e.g. ``X-HF-Bill-To: org``); the token's Authorization header wins."""
    url = http.base + "/v1/chat/completions"
    ans = Answer(model=str(body.get("model")))
    try:
        async with http.client.stream("POST", url, json=body, headers={**headers, **http.headers()}) as r:
            if r.status_code >= 400:
                text = (await r.aread()).decode(errors="replace")
                raise _Failed(classify(r.status_code, text, r.headers, choice))
            ans.served_by = r.headers.get("x-inference-provider")
            ans.request_id = r.headers.get("x-request-id")
            if not body.get("stream"):
                obj = parse_json((await r.aread()).decode(errors="replace"), "POST /v1/chat/completions")
                ans.last = time.perf_counter()
                piece = _delta_text(obj) if isinstance(obj, dict) else None
                if piece is None:
                    raise _Failed(Failure("broken", "answer has no choices[0].message", None,
                                          ans.request_id, ans.served_by, choice))
                ans.text, ans.chunks, ans.first = piece, 1, ans.last
                ans.usage = obj.get("usage") or {}
                return ans
            done = False
            async for line in r.aiter_lines():
                ts = time.perf_counter()
                if not line.startswith("data:"):
                    continue
                data = line[5:].strip()
                if data == "[DONE]":
                    done = True
                    break
                ev = parse_json(data, "stream /v1/chat/completions")
                if not isinstance(ev, dict):
                    raise ProtocolError(f"stream event is JSON but not an object: {one_line(data, 60)}")
                if ev.get("error") is not None and not ev.get("choices"):
                    msg, _, _ = _server_message(data, httpx.Headers())
                    raise _Failed(Failure("broken", f"error event mid-stream: {msg}", None, ans.request_id,
                                          ans.served_by, choice))
                piece = _delta_text(ev)
                if piece is not None:  # every chunk with choices counts, as in vllm bench serve
                    if ans.first is None:
                        ans.first = ts
                    else:
                        ans.itl.append(ts - ans.last)
                    ans.last = ts
                    ans.chunks += 1
                    ans.text += piece
                if isinstance(ev.get("usage"), dict) and ev["usage"]:
                    ans.usage = ev["usage"]
            if not done:
                raise _Failed(Failure("broken", "stream ended before data: [DONE] (cut mid-answer)", None,
                                      ans.request_id, ans.served_by, choice))
    except httpx.HTTPError as exc:
        f = _transport(exc, url, choice)
        raise _Failed(replace(f, request_id=ans.request_id, provider=ans.served_by)) from None
    except ProtocolError as exc:
        raise _Failed(Failure("broken", exc.reason, None, ans.request_id, ans.served_by, choice)) from None
    return ans


def backoff(attempt: int, rng: random.Random) -> float:
    """Exponential backoff with jitter: 0.5, 1, 2, 4, 8 s (capped) x uniform(0.5, 1.5)."""
    return min(BACKOFF_CAP_S, BACKOFF_BASE_S * 2**attempt) * rng.uniform(0.5, 1.5)


async def call(http: Http, base: str, chain: tuple[str, ...], body: dict[str, Any], retries: int,
               budget: float | None, rng: random.Random | None = None,
               headers: Mapping[str, str] | None = None) -> Outcome:
    """One request: each choice of ``chain`` in order (moving on after a failure another provider may not
    have), each retried up to ``retries`` times after a transient failure. ``budget``: seconds for the whole
    request (None: each attempt is bounded by the client's timeouts only). A Retry-After longer than the
    request may take (``budget``, else the client timeout), or a wait that would not fit in what is left of
    ``budget``, is not waited for: the request moves on (or ends)."""
    rng = rng or random.Random()
    start = time.perf_counter()
    out = Outcome(None, None)
    limit = budget if budget is not None else http.timeout

    def left() -> float | None:
        return None if budget is None else budget - (time.perf_counter() - start)

    for i, choice in enumerate(chain):
        if i:
            out.failovers += 1
        for attempt in range(retries + 1):
            remaining = left()
            if remaining is not None and remaining <= 0:
                out.failure = Failure("timeout", f"no complete answer within {budget:.0f}s", choice=choice)
                out.failed.append(out.failure)
                return out
            try:
                async with asyncio.timeout(remaining):
                    out.answer = await _exchange(http, {**body, "model": with_choice(base, choice)}, choice,
                                                 headers or {})
                out.failure = None
                return out
            except _Failed as exc:
                f = exc.failure
            except TimeoutError:
                f = Failure("timeout", f"no complete answer within {budget:.0f}s", choice=choice)
            out.failure = f
            out.failed.append(f)
            if not f.transient or attempt == retries:
                break
            wait = backoff(attempt, rng)
            if f.retry_after is not None:
                if f.retry_after > limit:
                    break
                wait = max(wait, f.retry_after)
            remaining = left()
            if remaining is not None and wait >= remaining:
                break
            out.retries += 1
            await asyncio.sleep(wait)
        assert out.failure is not None
        if not out.failure.moves_on or i == len(chain) - 1:
            break
    return out


# -- the engine -----------------------------------------------------------------------------------------
class HuggingFace(Engine):
    """Hugging Face's Inference Providers router (``hf=URL``; the URL is the router's ``/v1`` base)."""

    spec = Spec("hf", "Hugging Face Inference Providers", default_url=ROUTER_URL)
    apis = ("chat",)  # the router's OpenAI-compatible API is chat completions only
    default_api = "chat"
    auth_probe = ("POST", "/v1/chat/completions")  # GET /v1/models is public on the router
    structured_output = None  # depends on the provider (supports_structured_output); not checked here

    def __init__(self) -> None:
        self.settings = Settings()

    # -- command line --------------------------------------------------------------------------------------
    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        g = parser.add_argument_group("Hugging Face Inference Providers (hf=URL endpoints)")
        g.add_argument("--providers", metavar="LIST",
                       help="provider choices, e.g. auto,together,novita: one endpoint each (auto: the router's "
                            "default; fastest/cheapest/preferred: its policies; a name: that provider)")
        g.add_argument("--failover", action="store_true",
                       help="one endpoint instead: each request tries the --providers in order, moving on after "
                            "a timeout, connection error, 429, 402, 5xx or an unsupported model")
        g.add_argument("--retries", type=int, default=0, metavar="N",
                       help="retries per provider after a timeout, connection error, 429 or 5xx, with "
                            "exponential backoff and jitter; Retry-After honoured (default 0)")
        g.add_argument("--hf-token-file", metavar="FILE",
                       help="file holding the Hugging Face token (default: HF_TOKEN, HF_TOKEN_PATH, "
                            "then huggingface_hub's stored token)")

    def configure(self, args: argparse.Namespace, endpoints: list[Endpoint]) -> list[Endpoint]:
        providers_arg = getattr(args, "providers", None)
        failover = bool(getattr(args, "failover", False))
        retries = getattr(args, "retries", 0) or 0
        token_file = getattr(args, "hf_token_file", None)
        if retries < 0 or retries > 10:
            raise ConfigError(f"--retries must be between 0 and 10, not {retries}")
        mine = [e for e in endpoints if e.engine == self.name]
        if not mine:
            used = [f for f, v in (("--providers", providers_arg), ("--failover", failover),
                                   ("--retries", retries), ("--hf-token-file", token_file)) if v]
            if used:
                raise ConfigError(f"{', '.join(used)} apply to hf endpoints only: add hf=URL "
                                  f"(the router's /v1 base, e.g. hf={ROUTER_URL})")
            self.settings = Settings()
            return endpoints
        providers = parse_providers(providers_arg) if providers_arg else (AUTO,)
        if failover and len(providers) < 2:
            raise ConfigError("--failover needs at least two --providers to move between (e.g. together,novita)")
        global_key = _bare_api_key_files(getattr(args, "api_key_file", None))
        # a key file given for hf endpoints alone (--api-key-file hf=FILE) is the token; a bare --api-key-file
        # (every endpoint: a lab's key) is never sent to the cloud; --hf-token-file wins over both
        own = sorted({e.api_key_file for e in mine if e.api_key_file and e.api_key_file not in global_key})
        if own and not token_file:
            token = _file_source(own[0], "--api-key-file hf=FILE")
        else:
            token = resolve_token(token_file, os.environ)
        self.settings = Settings(providers=providers, failover=failover, retries=retries, token=token)
        out: list[Endpoint] = []
        several = len(mine) > 1
        for ep in endpoints:
            if ep.engine != self.name:
                out.append(ep)
                continue
            keyed = ep if own and not token_file and ep.api_key_file in own \
                else replace(ep, api_key_file=token.file, api_key_env=token.env)
            out.extend(self._expand(keyed, providers, failover, token, several))
        return out

    def _expand(self, ep: Endpoint, providers: tuple[str, ...], failover: bool, token: TokenSource,
                several: bool) -> list[Endpoint]:
        keyed = ep
        meta = dict(ep.meta)
        if token.warning:
            meta["token_warning"] = token.warning
        where = f"@{ep.host}:{ep.port}" if several else ""
        model = ep.model
        if model is not None and split_choice(model)[1] != AUTO:
            if providers != (AUTO,):
                raise ConfigError(f"--model {model} already names a provider choice; drop the suffix or --providers")
            choice = split_choice(model)[1]
            _check_choice(choice)
            return [replace(keyed, name=ep.name or f"hf{where}/{choice}", meta={**meta, "provider": choice})]
        if providers == (AUTO,):
            return [replace(keyed, name=ep.name or f"hf{where}/auto", meta={**meta, "provider": AUTO})]
        if model is None:
            raise ConfigError("--providers needs --model (the router serves many models; e.g. --model org/name)")
        if failover:
            chain = ",".join(providers)
            return [replace(keyed, name=ep.name or f"hf{where}/{'>'.join(providers)}",
                            meta={**meta, "provider": chain, "failover": chain})]
        return [replace(keyed, model=with_choice(model, p), name=f"{ep.name or 'hf' + where}/{p}",
                        meta={**meta, "provider": p}) for p in providers]

    def notes(self) -> list[str]:
        """One-line warnings about this run's settings, for the CLIs to print once (hook proposed to the lead;
        healthcheck also shows them as a ``token`` row, smoke-bench's JSON as ``token_warning``)."""
        return [self.settings.token.warning] if self.settings.token.warning else []

    def chain_for(self, model: str) -> tuple[str, tuple[str, ...]]:
        """(base model, provider choices to try in order) for a model as the endpoint names it."""
        base, choice = split_choice(model)
        if choice == AUTO and self.settings.failover:
            return base, self.settings.providers
        return base, (choice,)

    # -- recognise: never by probing (the router is named, hf=URL) ------------------------------------------
    def recognise(self, status: int, text: str) -> bool:
        return False

    # -- liveness and readiness -------------------------------------------------------------------------------
    async def _get(self, http: Http, path: str) -> tuple[Any, str | None]:
        url = http.base + path
        try:
            r = await http.client.get(url, headers=http.headers())
        except httpx.HTTPError as exc:
            raise ProtocolError(self._scrub(http, _transport(exc, url, AUTO).reason(""))) from None
        if r.status_code >= 400:
            f = classify(r.status_code, r.text, r.headers)
            raise ProtocolError(self._scrub(http, f.reason("")), status=r.status_code)
        return parse_json(r.text, f"GET {path}"), r.headers.get("x-request-id")

    async def catalogue(self, http: Http) -> list[dict[str, Any]]:
        """``GET /v1/models``: the router's entries, each with ``providers[]``."""
        body, _ = await self._get(http, "/v1/models")
        data = body.get("data") if isinstance(body, dict) else None
        if not isinstance(data, list):
            raise ProtocolError("GET /v1/models: answer has no 'data' list (is this the router's /v1 base?)")
        return [m for m in data if isinstance(m, dict) and m.get("id")]

    async def liveness(self, http: Http) -> Verdict:
        entries = await self.catalogue(http)
        live = sum(1 for m in entries if _live(m))
        return PASS, f"GET /v1/models: {len(entries)} models, {live} with a live provider"

    async def models(self, http: Http) -> list[str]:
        """Models with at least one live provider, then the names the router accepts for them: each listed
        provider (``org/m:together``) and each policy (``org/m:cheapest``), so that a check of
        ``--model org/m:together`` keeps its provider choice."""
        entries = [m for m in await self.catalogue(http) if _live(m)]
        plain = [str(m["id"]) for m in entries]
        suffixed = [f"{m['id']}:{c}" for m in entries
                    for c in (*POLICIES, *(str(p.get("provider")) for p in _providers(m)))]
        return plain + suffixed

    async def gpu_residency(self, http: Http, model: str, expect_gpu: bool | None) -> Verdict | None:
        return None  # the providers' GPUs are not ours to see

    # -- function ------------------------------------------------------------------------------------------
    def function_steps(self, http: Http, model: str, max_tokens: int) -> list[Step]:
        base, chain = self.chain_for(model)
        token = self.settings.token

        async def token_row() -> Verdict:
            if token.warning:
                return WARN, token.warning
            return PASS, f"from {token.origin}"

        async def providers_row() -> Verdict:
            return await self._providers_verdict(http, base, chain)

        async def plain() -> Verdict:
            return await self._completion_verdict(http, base, chain, max_tokens, stream=False)

        async def streamed() -> Verdict:
            return await self._completion_verdict(http, base, chain, max_tokens, stream=True)

        steps: list[Step] = [("token", token_row)] if token.origin else []
        return [*steps, ("providers", providers_row), ("completion", plain), ("stream", streamed)]

    async def _providers_verdict(self, http: Http, base: str, chain: tuple[str, ...]) -> Verdict:
        try:
            entry, _ = await self._get(http, f"/v1/models/{base}")
        except ProtocolError as exc:
            if exc.status != 404:
                raise
            entry = next((m for m in await self.catalogue(http) if m.get("id") == base), None)
        if isinstance(entry, dict) and isinstance(entry.get("data"), list):
            entry = next((m for m in entry["data"] if isinstance(m, dict) and m.get("id") == base), None)
        if not isinstance(entry, dict):
            return FAIL, f"{base} is not listed by GET /v1/models"
        provs = _providers(entry)
        listed = ", ".join(_describe_provider(p) for p in provs) or "no providers listed"
        status = {str(p.get("provider")): str(p.get("status", "?")) for p in provs}
        named = [c for c in chain if c != AUTO and c not in POLICIES]
        missing = [c for c in named if c not in status]
        down = [c for c in named if c in status and status[c] != "live"]
        any_live = any(s == "live" for s in status.values())
        usable = [c for c in chain if (c in (AUTO, *POLICIES) and any_live) or status.get(c) == "live"]
        problems = [f"{c} does not serve {base}" for c in missing] + [f"{c} is {status[c]}" for c in down]
        if not usable:
            why = "; ".join(problems) or "no provider is live"
            return FAIL, f"{why}; listed: {listed}"
        if problems:
            return WARN, f"{'; '.join(problems)}; listed: {listed}"
        return PASS, listed

    async def _completion_verdict(self, http: Http, base: str, chain: tuple[str, ...], max_tokens: int,
                                  stream: bool) -> Verdict:
        body = oa.chat_payload(base, PROMPT, max_tokens, stream)
        out = await call(http, base, chain, body, self.settings.retries, None)
        model = with_choice(base, chain[0])
        if out.answer is None:
            assert out.failure is not None
            tried = f" (tried {', '.join(chain)})" if len(chain) > 1 else ""
            return FAIL, self._scrub(http, out.failure.reason(model) + tried)
        a = out.answer
        served = a.served_by or "unknown (no x-inference-provider header)"
        moves = ""
        if out.failed:
            moves = "; after " + ", ".join(f"{f.choice}: {f.title()} (x-request-id {f.request_id or 'none'})"
                                           for f in out.failed)
        if not a.text.strip():
            return FAIL, f"empty answer served by {served}; x-request-id {a.request_id}{moves}"
        what = f"SSE: {a.chunks} chunks, " if stream else ""
        tokens = a.usage.get("completion_tokens", "?")
        return PASS, self._scrub(http, f"served by {served}: {what}{tokens} tokens; x-request-id {a.request_id}"
                                       f"{moves}")

    @staticmethod
    def _scrub(http: Http, text: str) -> str:
        return text.replace(http.api_key, "***") if http.api_key else text

    # -- benchmark requests ----------------------------------------------------------------------------------
    async def send(self, http: Http, api: str, model: str, prompt: str, params: RequestParams) -> RequestResult:
        """One streamed chat completion through the router (provider choice, failover, retries)."""
        base, chain = self.chain_for(model)
        extra: dict[str, Any] = dict(params.extra)  # ignore_eos is not sent: hosted providers reject it
        if params.temperature is not None:
            extra["temperature"] = params.temperature
        if params.top_p is not None:
            extra["top_p"] = params.top_p
        body = oa.chat_payload(base, prompt, params.max_tokens, True, **extra)
        res = RequestResult()
        st = time.perf_counter()
        out = await call(http, base, chain, body, self.settings.retries, params.request_timeout,
                         headers=params.headers)
        res.failovers = out.failovers
        res.engine_stats = {"retries": out.retries}
        # every failed attempt with its x-request-id (what HF support asks for), the final failure included
        res.failed_attempts = [f"{f.choice}: {f.kind} {f.status or ''} x-request-id "
                               f"{f.request_id or 'none'}".replace("  ", " ") for f in out.failed]
        if out.answer is None:
            assert out.failure is not None
            res.request_id = out.failure.request_id
            res.error = self._scrub(http, out.failure.key(with_choice(base, chain[-1])))
            return res
        a = out.answer
        res.request_id = a.request_id
        res.served_by = a.served_by
        if a.first is None or a.chunks == 0:
            res.error = "never received a chunk with tokens (cannot compute TTFT)"
            return res
        res.ttft = a.first - st
        res.itl = a.itl
        res.latency = a.last - st
        res.chunks = a.chunks
        # a provider's odd counts ("3", -5) are "not reported" with a warning, as for the lab's own engines
        res.output_tokens, res.prompt_tokens, warning = usage_counts(a.usage)
        add_warning(res, warning)
        res.generated_text = a.text
        res.success = True
        return res

    def views(self, results: list[Any]) -> list[Any]:
        """Report views beside smoke-bench's table: the provider report (auto vs explicit), when any
        endpoint had a provider choice. (A hook for the CLI: ``for e in ENGINES.values(): e.views(results)``.)"""
        from .. import hf_report

        view = hf_report.table(hf_report.rows(results))
        return [view] if view is not None else []

    def summarise(self, ok: list[RequestResult]) -> dict[str, float]:
        """Retries spent on the successful requests (failovers and served_by are generic columns)."""
        return {"retries": float(sum(int(r.engine_stats.get("retries", 0)) for r in ok))}


def _check_choice(choice: str) -> None:
    if not _CHOICE.match(choice):
        raise ConfigError(f"--model: {choice!r} is not a provider choice (a provider name or "
                          f"{', '.join(POLICIES)})")


def _bare_api_key_files(value: Any) -> set[str]:
    """The --api-key-file values meant for every endpoint (a bare FILE, not ENGINE=FILE)."""
    items = value if isinstance(value, list | tuple) else [value] if value else []
    return {str(v) for v in items if isinstance(v, str) and "=" not in v}


def _providers(entry: Mapping[str, Any]) -> list[dict[str, Any]]:
    provs = entry.get("providers")
    return [p for p in provs if isinstance(p, dict) and p.get("provider")] if isinstance(provs, list) else []


def _live(entry: Mapping[str, Any]) -> bool:
    return any(p.get("status") == "live" for p in _providers(entry))


def _describe_provider(p: Mapping[str, Any]) -> str:
    """``together live (TTFT 611 ms, 40.1 tok/s, $2.10/$4.40 per M in/out)``: HF's own probe figures."""
    figures = []
    if isinstance(p.get("first_token_latency_ms"), int | float):
        figures.append(f"TTFT {p['first_token_latency_ms']:.0f} ms")
    if isinstance(p.get("throughput"), int | float):
        figures.append(f"{p['throughput']:.1f} tok/s")
    price = p.get("pricing")
    if isinstance(price, dict) and isinstance(price.get("input"), int | float) \
            and isinstance(price.get("output"), int | float):
        figures.append(f"${price['input']:.2f}/${price['output']:.2f} per M in/out")
    tail = f" ({', '.join(figures)})" if figures else ""
    return f"{p.get('provider')} {p.get('status', '?')}{tail}"


ENGINE = HuggingFace()
