"""HTTP plumbing shared by the OpenAI-compatible and Ollama clients.

Every failure becomes :class:`ProtocolError` with a one-line, secret-free reason: connection refused, DNS,
TLS, timeouts, HTML error pages from proxies, non-JSON or truncated JSON, streams cut mid-answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import os
import re
import ssl
import time
from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping
from typing import Any

import httpx

from ..errors import ConfigError, ProtocolError, register_secret

__all__ = ["Http", "ProtocolError", "cert_expiry", "describe", "error_reason", "one_line", "parse_json",
           "read_api_key", "tls_context"]


def _root_cause(exc: BaseException) -> BaseException:
    seen = exc
    while seen.__cause__ is not None or seen.__context__ is not None:
        nxt = seen.__cause__ or seen.__context__
        assert nxt is not None
        seen = nxt
    return seen


def describe(exc: BaseException, url: str) -> str:
    """One line for a transport exception (never a traceback)."""
    root = _root_cause(exc)
    text = str(root) or str(exc) or type(exc).__name__
    host = httpx.URL(url).host if url else "?"
    if isinstance(exc, httpx.ConnectTimeout):
        return f"connect timeout: {url} did not accept a connection"
    if isinstance(exc, httpx.ReadTimeout):
        return f"read timeout: {url} accepted the connection but sent no answer in time"
    if isinstance(exc, httpx.WriteTimeout | httpx.PoolTimeout):
        return f"timeout talking to {url}"
    if isinstance(root, ssl.SSLError) or "SSL" in text or "CERTIFICATE" in text.upper():
        return f"TLS error with {host}: {text.splitlines()[0][:160]}"
    if isinstance(exc, httpx.ConnectError):
        low = text.lower()
        if "name or service not known" in low or "nodename nor servname" in low or "errno -2" in low \
                or "errno -3" in low or "temporary failure in name resolution" in low or "errno -5" in low:
            return f"DNS lookup failed for host {host!r}"
        if "refused" in low or "errno 111" in low:
            return f"connection refused at {url} (nothing listening: is the engine running?)"
        if "unreachable" in low:
            return f"network unreachable: {url}"
        return f"cannot connect to {url}: {text.splitlines()[0][:160]}"
    if isinstance(exc, httpx.RemoteProtocolError):
        return f"connection to {url} closed mid-answer: {text.splitlines()[0][:160]}"
    if isinstance(exc, httpx.HTTPError):
        return f"HTTP error with {url}: {text.splitlines()[0][:160]}"
    return f"{type(exc).__name__}: {text.splitlines()[0][:160]}"


_TITLE = re.compile(r"<title>(.*?)</title>", re.I | re.S)
_WS = re.compile(r"\s+")


def one_line(text: str, limit: int = 200) -> str:
    return _WS.sub(" ", text).strip()[:limit]


def error_reason(status: int, body: str, ctype: str) -> str:
    """The server's own message for a non-2xx answer, in one line."""
    snippet = body.strip()
    if "html" in ctype or snippet.lower().startswith(("<!doctype html", "<html")):
        m = _TITLE.search(snippet)
        title = one_line(m.group(1), 80) if m else "an HTML page"
        return f"HTTP {status} with an HTML page ({title}): a proxy or gateway answered, not the engine"
    try:
        obj = json.loads(snippet)
    except ValueError:
        return f"HTTP {status}: {one_line(snippet, 160) or '(empty body)'}"
    msg: Any = obj
    if isinstance(obj, dict):
        err = obj.get("error", obj.get("message", obj.get("detail")))
        if isinstance(err, dict):
            err = err.get("message", err)
        msg = err if err is not None else obj
    return f"HTTP {status}: {one_line(str(msg))}"


def parse_json(text: str, what: str) -> Any:
    if not text.strip():
        raise ProtocolError(f"{what}: empty body where JSON was expected")
    if text.lstrip().startswith("<"):
        raise ProtocolError(f"{what}: got HTML where JSON was expected")
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        # JSON that stops early: the decoder ran off the end, or a string was never closed
        cut = exc.pos >= len(text.rstrip()) or exc.msg.startswith("Unterminated")
        kind = "truncated JSON" if cut else "invalid JSON"
        raise ProtocolError(f"{what}: {kind} ({exc.msg} at char {exc.pos})") from None
    except RecursionError:  # [[[[...]]]] thousands deep: no engine sends that
        raise ProtocolError(f"{what}: JSON nested too deeply to read") from None


@functools.cache
def tls_context(ca_bundle: str | None = None, *, insecure: bool = False) -> ssl.SSLContext:
    """What ``httpx``'s ``verify=`` takes, built once per (bundle, insecure) pair (building one costs tens of
    ms of CPU; every client of a run shares it).

    Trust as ``curl``, ``openssl`` and the system tools see it: the system store (``/etc/ssl/certs`` on
    Debian/Ubuntu, where ``update-ca-certificates`` puts an internal CA), or ``SSL_CERT_FILE`` /
    ``SSL_CERT_DIR`` when set (OpenSSL reads them); certifi's bundle only when that store is empty (a
    Python built without system certificates). ``ca_bundle`` (a PEM file or a hashed directory) is trusted
    in addition. ``insecure``: no verification at all (the CLIs print a warning line)."""
    if insecure:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        return ctx
    ctx = ssl.create_default_context()  # system store, or SSL_CERT_FILE / SSL_CERT_DIR
    if not ctx.cert_store_stats().get("x509_ca") and not (os.environ.get("SSL_CERT_FILE")
                                                          or os.environ.get("SSL_CERT_DIR")):
        import certifi

        ctx.load_verify_locations(cafile=certifi.where())
    if ca_bundle:
        try:
            if os.path.isdir(ca_bundle):
                ctx.load_verify_locations(capath=ca_bundle)
            else:
                ctx.load_verify_locations(cafile=ca_bundle)
        except FileNotFoundError:
            raise ConfigError(f"--ca-bundle {ca_bundle}: no such file") from None
        except (OSError, ssl.SSLError, ValueError) as exc:
            reason = getattr(exc, "strerror", None) or one_line(str(exc), 120)
            raise ConfigError(f"--ca-bundle {ca_bundle} is not a PEM certificate bundle: {reason}") from None
    return ctx


async def cert_expiry(url: str, ctx: ssl.SSLContext, timeout: float) -> float | None:
    """Seconds until the certificate of the https endpoint ``url`` expires (negative: expired); None for
    plain http or a context that does not verify (no parsed certificate then). Failures raise ProtocolError."""
    parts = httpx.URL(url)
    if parts.scheme != "https" or ctx.verify_mode == ssl.CERT_NONE:
        return None
    host, port = parts.host, parts.port or 443
    try:
        async with asyncio.timeout(timeout):
            _, writer = await asyncio.open_connection(host, port, ssl=ctx, server_hostname=host)
    except TimeoutError:
        raise ProtocolError(f"connect timeout: {url} did not complete a TLS handshake") from None
    except (OSError, ssl.SSLError) as exc:
        raise ProtocolError(f"TLS error with {host}: {one_line(str(exc), 160)}") from None
    try:
        cert = writer.get_extra_info("peercert") or {}
    finally:
        writer.close()
        with contextlib.suppress(OSError, ssl.SSLError, TimeoutError):
            async with asyncio.timeout(timeout):
                await writer.wait_closed()
    not_after = cert.get("notAfter")
    if not isinstance(not_after, str):
        return None
    return ssl.cert_time_to_seconds(not_after) - time.time()


class Http:
    """Requests to one endpoint over the caller's ``httpx.AsyncClient``; every failure becomes ProtocolError."""

    def __init__(self, base_url: str, timeout: float, api_key: str | None, client: httpx.AsyncClient) -> None:
        self.base = base_url.rstrip("/")
        self.timeout = timeout
        self.api_key = api_key
        self.client = client  # owned by the caller (one pool per endpoint)

    def headers(self, *, auth: bool = True) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"} if auth and self.api_key else {}

    async def request(self, method: str, path: str, *, json_body: Any = None, auth: bool = True,
                      expect: str = "json") -> tuple[int, Any, float]:
        """Send, check status, decode. Returns (status, decoded body, elapsed seconds)."""
        url = self.base + path
        t0 = time.perf_counter()
        r = await self._send(method, url, json_body, auth=auth)
        elapsed = time.perf_counter() - t0
        if r.status_code >= 400:
            raise ProtocolError(error_reason(r.status_code, r.text, r.headers.get("content-type", "")),
                                status=r.status_code)
        if expect == "json":
            return r.status_code, parse_json(r.text, f"{method} {path}"), elapsed
        return r.status_code, r.text, elapsed

    async def probe(self, path: str) -> tuple[int, str]:
        """GET ``path`` for recognition: (status, first 2000 characters); (0, "") when nothing answered."""
        try:
            r = await self.client.get(self.base + path, headers=self.headers(), timeout=self.timeout)
        except httpx.HTTPError:
            return 0, ""
        return r.status_code, r.text[:2000]

    async def status_only(self, method: str, path: str, *, json_body: Any = None, auth: bool = True) -> int:
        return (await self._send(method, self.base + path, json_body, auth=auth)).status_code

    async def _send(self, method: str, url: str, json_body: Any, *, auth: bool) -> httpx.Response:
        """One request; sent again once when the server closed a pooled keep-alive connection just as it was
        reused (it then answers nothing at all, so nothing was processed: llama-server's keep-alive
        timeout races a client's next request)."""
        for attempt in (1, 2):
            try:
                return await self.client.request(method, url, json=json_body, headers=self.headers(auth=auth))
            except httpx.RemoteProtocolError as exc:
                if attempt == 1 and "without sending a response" in str(exc):
                    continue
                raise ProtocolError(describe(exc, url)) from None
            except httpx.HTTPError as exc:
                raise ProtocolError(describe(exc, url)) from None
        raise AssertionError("unreachable")

    async def stream(self, path: str, payload: Mapping[str, Any], fmt: str, *, strict: bool = True,
                     headers: Mapping[str, str] | None = None, batch: bool = False,
                     on_response: Callable[[httpx.Response], Awaitable[None]] | None = None,
                     ) -> AsyncGenerator[tuple[float, Any], None]:
        """POST and yield ``(perf_counter timestamp, decoded event)`` per SSE event or NDJSON line.

        SSE: comments (``:``) skipped, ``[DONE]`` ends the stream (yielded as None). NDJSON: ends with the
        object carrying ``done: true``. ``strict`` (the health checks): a stream that ends without its end
        marker, or an SSE error event, is a ProtocolError. ``strict=False`` (the benchmark, which counts as
        ``vllm bench serve`` counts): error events are yielded like any event and a stream may just end; the
        caller decides. The timestamp is taken when the bytes arrive, before JSON decoding (every event of
        one network read shares it, as in vLLM's client). ``batch``: yield ``(timestamp, [events])`` once per
        network read instead of once per event (the benchmark's hot loop: one generator step per read).

        The body is read as raw byte chunks and split on newlines here (no text decoding, no per-line
        iterator layers; SSE lines may also end with CRLF or a bare CR, as its spec allows); events are decoded
        from bytes (orjson when installed). ``on_response``: called with the response as soon as its headers
        arrive, before the status is checked (a caller that reads headers, or classifies an error answer its own
        way, raises from it). A transport failure is a ProtocolError whose ``__cause__`` is httpx's exception.
        After the end marker the
        rest of the body is read, so the connection goes back to the pool instead of being closed (a new
        TCP connection per request would add to every TTFT)."""
        url = self.base + path
        hdrs = self.headers()
        if headers:
            hdrs = {**hdrs, **headers}
        sse = fmt == "sse"
        decode = _event_decoder(path)
        perf = time.perf_counter
        sent_any = False
        for attempt in (1, 2):  # once more when a reused keep-alive connection was closed under us (see _send)
            try:
                async with self.client.stream("POST", url, json=payload, headers=hdrs) as r:
                    if on_response is not None:
                        await on_response(r)
                    if r.status_code >= 400:
                        body = (await r.aread()).decode(errors="replace")
                        raise ProtocolError(error_reason(r.status_code, body, r.headers.get("content-type", "")),
                                            status=r.status_code)
                    finished = False
                    rest = b""
                    chunks = r.aiter_bytes()
                    while not finished:
                        try:
                            chunk = await chunks.__anext__()
                        except StopAsyncIteration:
                            if not rest:
                                break
                            chunk, rest = rest + b"\n", b""
                        ts = perf()
                        if rest:
                            chunk = rest + chunk
                        if sse and b"\r" in chunk:  # the SSE spec ends lines with CRLF, LF or a bare CR (NDJSON
                            # only with LF or CRLF, which strip() handles); a CRLF cut between two reads leaves
                            # an empty line, which SSE skips
                            chunk = chunk.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
                        lines = chunk.split(b"\n")
                        rest = lines.pop()
                        events, finished = _line_events(lines, decode, sse=sse, strict=strict)
                        if events:
                            sent_any = True
                        if batch:
                            if events:
                                yield ts, events
                        else:
                            for ev in events:
                                yield ts, ev
                    if finished:
                        async for _ in chunks:  # drain what follows the end marker: the connection stays reusable
                            pass
                    elif strict:
                        end = "data: [DONE]" if sse else 'a line with "done": true'
                        raise ProtocolError(f"stream {path} ended before {end} (cut mid-answer)")
            except httpx.RemoteProtocolError as exc:
                if attempt == 1 and not sent_any and "without sending a response" in str(exc):
                    continue
                raise ProtocolError(describe(exc, url)) from exc
            except httpx.HTTPError as exc:
                raise ProtocolError(describe(exc, url)) from exc
            return


def _event_decoder(path: str) -> Callable[[bytes, str], dict[str, Any]]:
    """Bytes of one stream event -> its JSON object (orjson when installed, imported once per process); what is
    not a JSON object is a ProtocolError naming the stream's ``path``."""
    loads: Any = getattr(Http, "_json_loads", None)  # failed imports are retried, so remember the choice
    if loads is None:
        try:
            from orjson import loads
        except ImportError:  # optional speed-up: the standard library decodes the same JSON
            loads = json.loads
        setattr(Http, "_json_loads", loads)  # noqa: B010

    def decode(raw: bytes, what: str) -> dict[str, Any]:
        try:
            event = loads(raw)
        except ValueError:
            event = parse_json(raw.decode(errors="replace"), f"stream {path}")
        if type(event) is not dict:
            raise ProtocolError(f"stream {path}: {what} is JSON but not an object: "
                                f"{one_line(raw.decode(errors='replace'), 60)}")
        return event
    return decode


def _line_events(lines: list[bytes], decode: Callable[[bytes, str], dict[str, Any]], *, sse: bool, strict: bool
                 ) -> tuple[list[dict[str, Any] | None], bool]:
    """The events of one network read's complete lines, and whether the stream's end marker was among them (SSE
    ``data: [DONE]``, yielded as None; NDJSON: the object with ``done: true``). See :meth:`Http.stream`."""
    events: list[dict[str, Any] | None] = []
    for raw in lines:
        if sse:
            if raw[:5] != b"data:":
                continue  # blank separators, comments, event:/id: fields
            data = raw[5:].strip()
            if data == b"[DONE]":
                events.append(None)
                return events, True
            event = decode(data, "event")
            if strict and "error" in event and not event.get("choices"):
                raise ProtocolError(error_reason(500, data.decode(errors="replace"), "application/json"))
        else:
            line = raw.strip()
            if not line:
                continue
            event = decode(line, "line")
            if strict and "error" in event:
                raise ProtocolError(f"stream error: {one_line(str(event['error']))}")
            if event.get("done") is True:
                events.append(event)
                return events, True
        events.append(event)
    return events, False


# The whitespace around a key that is no part of it: the ASCII set (POSIX [[:space:]]) the compose entrypoints trim
# and healthchecks/exposure.py's rule uses; not str.strip()'s wider set, so a key padded with, say, U+00A0 (which the
# engine keeps) is refused below instead of being sent without it.
KEY_WHITESPACE = " \t\n\r\x0b\x0c"


def read_api_key(path: str | None, env: str | None = None) -> str | None:
    """The API key from a file (never argv), else from the environment variable named ``env``. Missing,
    unreadable or empty sources are config errors."""
    if not path:
        if env is None:
            return None
        value = os.environ.get(env, "").strip()
        if not value:
            raise ConfigError(f"environment variable {env} is empty or not set")
        register_secret(value)
        return _one_token(value, f"environment variable {env}")
    if "\0" in path:  # open() would raise ValueError before any system call
        raise ConfigError(f"API key file {path!r} cannot be read: a file name cannot hold a NUL character")
    if path in _READ_ONCE:  # a pipe (`--api-key-file <(pass show lab/vllm)`) can be read only once
        return _READ_ONCE[path]
    try:
        with open(path, encoding="utf-8") as fh:
            key = fh.read().strip(KEY_WHITESPACE)
            regular = os.path.isfile(path)
    except OSError as exc:
        raise ConfigError(f"API key file {path} cannot be read: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"API key file {path} is not UTF-8 text") from None
    if not key:
        raise ConfigError(f"API key file {path} is empty")
    key = _one_token(key, f"API key file {path}")
    register_secret(key)
    if not regular:
        _READ_ONCE[path] = key
    return key


_READ_ONCE: dict[str, str] = {}  # keys read from pipes and devices, by path


def _one_token(key: str, where: str) -> str:
    """A key an HTTP header can carry; the message never echoes the content."""
    if not key.isascii() or not key.isprintable() or any(c.isspace() for c in key):
        raise ConfigError(f"{where} does not hold one key (a key has no spaces, line breaks or "
                          "non-ASCII characters)")
    return key
