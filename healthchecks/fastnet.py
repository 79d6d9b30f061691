"""A lean asyncio network backend for httpcore (the transport under httpx), for the benchmark's hot path.

Profiling smoke-bench against a static SSE server (tests/benchmarks/bench_client_cost.py) showed half of the
client's time in httpcore's connection pool, not in the stream: before every request and after every
response the pool asks each pooled connection ``has_expired()``, which asks the anyio stream for
``is_readable``; anyio builds its whole typed-attribute table (several socket calls) for every such question,
and wraps every read and write in a cancel scope. This backend answers the same questions from plain asyncio
streams: ``is_readable`` from the reader's own state (EOF or unexpected bytes already buffered), reads and
writes without a cancel scope (``asyncio.timeout`` only when a timeout is set), writes drained only when the
transport's buffer is full. Errors map to httpcore's exceptions, so httpx raises what it always raises
(``ConnectError``, ``ReadTimeout``...) with the OS error as the cause.

``install(client)`` swaps it into an ``httpx.AsyncClient``'s default transport (TLS settings stay the
transport's: the pool's SSL context is untouched); when httpx's internals are not what this expects, the
client is left as it is.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
from collections.abc import Iterable, Iterator
from typing import Any

import httpcore
import httpx

_HIGH_WATER = 64 * 1024


@contextlib.contextmanager
def _errors(timeout_exc: type[Exception], other_exc: type[Exception]) -> Iterator[None]:
    try:
        yield
    except TimeoutError as exc:
        raise timeout_exc(str(exc) or "timed out") from exc
    except (OSError, ssl.SSLError, asyncio.IncompleteReadError) as exc:
        raise other_exc(str(exc) or type(exc).__name__) from exc
    except UnicodeError as exc:  # a host name the IDNA codec refuses (a label empty or over 63 characters)
        raise other_exc(f"invalid host name ({exc})") from exc
    except OverflowError as exc:  # a port outside 0-65535 reaching the socket layer
        raise other_exc(f"invalid port ({exc})") from exc


class AsyncioStream(httpcore.AsyncNetworkStream):
    """Writes are collected and sent in one system call when the response is first read (httpcore writes a
    request's headers and body separately), or as soon as they pass 64 KiB."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader, self._writer = reader, writer
        self._pending: list[bytes] = []
        self._pending_size = 0

    async def _flush(self, timeout: float | None) -> None:
        data = b"".join(self._pending)
        self._pending.clear()
        self._pending_size = 0
        if self._writer.is_closing():
            raise ConnectionResetError("connection closed")
        self._writer.write(data)
        if self._writer.transport.get_write_buffer_size() > _HIGH_WATER:
            async with asyncio.timeout(timeout):
                await self._writer.drain()

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        if self._pending:
            with _errors(httpcore.WriteTimeout, httpcore.WriteError):
                await self._flush(timeout)
        with _errors(httpcore.ReadTimeout, httpcore.ReadError):
            if timeout is None:
                return await self._reader.read(max_bytes)
            async with asyncio.timeout(timeout):
                return await self._reader.read(max_bytes)

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        if not buffer:
            return
        self._pending.append(buffer)
        self._pending_size += len(buffer)
        if self._pending_size > _HIGH_WATER:
            with _errors(httpcore.WriteTimeout, httpcore.WriteError):
                await self._flush(timeout)

    async def aclose(self) -> None:
        self._pending.clear()
        self._writer.close()

    async def start_tls(self, ssl_context: ssl.SSLContext, server_hostname: str | None = None,
                        timeout: float | None = None) -> httpcore.AsyncNetworkStream:
        with _errors(httpcore.ConnectTimeout, httpcore.ConnectError):
            async with asyncio.timeout(timeout):
                await self._writer.start_tls(ssl_context, server_hostname=server_hostname)
        return self

    def get_extra_info(self, info: str) -> Any:
        if info == "is_readable":  # an idle keep-alive connection with EOF or stray bytes is not reusable
            return self._reader.at_eof() or bool(getattr(self._reader, "_buffer", b""))
        if info == "ssl_object":
            return self._writer.get_extra_info("ssl_object")
        if info == "client_addr":
            return self._writer.get_extra_info("sockname")
        if info == "server_addr":
            return self._writer.get_extra_info("peername")
        if info == "socket":
            return self._writer.get_extra_info("socket")
        return None


class AsyncioBackend(httpcore.AsyncNetworkBackend):
    async def connect_tcp(self, host: str, port: int, timeout: float | None = None,
                          local_address: str | None = None,
                          socket_options: Iterable[Any] | None = None) -> httpcore.AsyncNetworkStream:
        with _errors(httpcore.ConnectTimeout, httpcore.ConnectError):
            async with asyncio.timeout(timeout):
                reader, writer = await asyncio.open_connection(
                    host, port, local_addr=(local_address, 0) if local_address else None, limit=2**20)
        sock = writer.get_extra_info("socket")
        if sock is not None:
            for option in socket_options or ():
                sock.setsockopt(*option)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return AsyncioStream(reader, writer)

    async def connect_unix_socket(self, path: str, timeout: float | None = None,
                                  socket_options: Iterable[Any] | None = None) -> httpcore.AsyncNetworkStream:
        with _errors(httpcore.ConnectTimeout, httpcore.ConnectError):
            async with asyncio.timeout(timeout):
                reader, writer = await asyncio.open_unix_connection(path, limit=2**20)
        return AsyncioStream(reader, writer)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


def install(client: httpx.AsyncClient) -> bool:
    """Use the asyncio backend under ``client``'s default transport; False when httpx's layout differs (then
    the client keeps anyio's backend and works as before)."""
    pool = getattr(getattr(client, "_transport", None), "_pool", None)
    if not isinstance(pool, httpcore.AsyncConnectionPool) or not hasattr(pool, "_network_backend"):
        return False
    pool._network_backend = AsyncioBackend()
    return True
