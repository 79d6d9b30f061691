"""An OpenAI-compatible server whose latency rises with load: a double for pacing and sweep tests, and a fast
static SSE server for the client-cost benchmarks.

Model of a serving engine: ``slots`` requests decode at once (llama.cpp's ``--parallel``, vLLM's
``--max-num-seqs``); more wait in a queue, so their TTFT grows. A running request takes ``prefill`` seconds,
then one token every ``token_delay * (1 + slowdown * (running - 1))`` seconds (a bigger batch decodes each
token a little slower). Capacity is therefore about ``slots / (prefill + tokens * token_delay')`` requests/s:
below it latency stays flat, above it queueing makes TTFT climb: the knee a sweep must find.

With ``token_delay`` 0 and ``prefill`` 0 it answers a pre-built static SSE body at once (Content-Length, one
write): the cheapest server possible, so that a client benchmark measures the client.

Endpoints: ``GET /v1/models``, ``GET /health``, ``POST /v1/completions`` and ``/v1/chat/completions`` (streamed
SSE with a usage chunk and ``data: [DONE]``; ``max_tokens``/``max_completion_tokens`` tokens, one word each;
``prompt_tokens`` counts the prompt's words). Run: ``python tests/doubles/loaded_server.py --port 8000
--slots 2 --token-delay 0.01``; in tests ``start(...)`` serves on a free port in a background thread.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import threading
import time
from dataclasses import dataclass
from typing import Any

MODEL = "loaded"


@dataclass
class Load:
    slots: int = 2
    token_delay: float = 0.01
    prefill: float = 0.0
    slowdown: float = 0.1
    running: int = 0
    served: int = 0
    peak_running: int = 0


def _sse(obj: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(obj, separators=(",", ":")).encode() + b"\n\n"


def _chunk(chat: bool, i: int) -> dict[str, Any]:
    if chat:
        return {"id": "x", "object": "chat.completion.chunk", "model": MODEL,
                "choices": [{"index": 0, "delta": {"content": f" w{i}"}, "finish_reason": None}]}
    return {"id": "x", "object": "text_completion", "model": MODEL,
            "choices": [{"index": 0, "text": f" w{i}", "finish_reason": None}]}


def static_body(chat: bool, tokens: int, prompt_tokens: int) -> bytes:
    parts = [_sse(_chunk(chat, i)) for i in range(tokens)]
    parts.append(_sse({"id": "x", "choices": [], "usage": {"prompt_tokens": prompt_tokens,
                                                          "completion_tokens": tokens,
                                                          "total_tokens": prompt_tokens + tokens}}))
    parts.append(b"data: [DONE]\n\n")
    return b"".join(parts)


class Server:
    def __init__(self, load: Load) -> None:
        self.load = load
        self.sem: asyncio.Semaphore | None = None
        self._static: dict[tuple[bool, int, int], bytes] = {}

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.sem is None:
            self.sem = asyncio.Semaphore(self.load.slots)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                method, path, _ = lines[0].split(" ", 2)
                headers = {k.lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:] if ln)}
                body = await reader.readexactly(int(headers.get("content-length", "0") or 0))
                await self.route(method, path, body, writer)
                if headers.get("connection", "").lower() == "close":
                    break
        except (asyncio.IncompleteReadError, ConnectionError, ValueError):
            pass
        finally:
            writer.close()

    @staticmethod
    def _reply(writer: asyncio.StreamWriter, status: str, body: bytes, ctype: str = "application/json") -> None:
        writer.write(f"HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {len(body)}\r\n\r\n".encode()
                     + body)

    async def route(self, method: str, path: str, raw: bytes, writer: asyncio.StreamWriter) -> None:
        if method == "GET" and path == "/v1/models":
            self._reply(writer, "200 OK", json.dumps({"object": "list", "data": [{"id": MODEL}]}).encode())
        elif method == "GET" and path == "/health":
            self._reply(writer, "200 OK", b"{}")
        elif method == "POST" and path in ("/v1/completions", "/v1/chat/completions"):
            req = json.loads(raw or b"{}")
            chat = path.endswith("chat/completions")
            n = int(req.get("max_completion_tokens") or req.get("max_tokens") or 16)
            prompt = req["messages"][-1]["content"] if chat else req.get("prompt", "")
            p_tokens = len(str(prompt).split())
            if not req.get("stream"):
                self._reply(writer, "400 Bad Request", b'{"error":{"message":"only streaming"}}')
            elif self.load.token_delay == 0 and self.load.prefill == 0:
                key = (chat, n, p_tokens)
                if key not in self._static:
                    self._static[key] = static_body(chat, n, p_tokens)
                self._reply(writer, "200 OK", self._static[key], "text/event-stream")
                self.load.served += 1
            else:
                await self.stream(writer, chat, n, p_tokens)
        else:
            self._reply(writer, "404 Not Found", b'{"error":{"message":"not found"}}')
        await writer.drain()

    async def stream(self, writer: asyncio.StreamWriter, chat: bool, n: int, p_tokens: int) -> None:
        load = self.load
        assert self.sem is not None
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n")

        def send(data: bytes) -> None:
            writer.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")

        async with self.sem:  # a decode slot: the wait for one is queueing (TTFT)
            load.running += 1
            load.peak_running = max(load.peak_running, load.running)
            try:
                await asyncio.sleep(load.prefill)
                t = time.perf_counter()
                for i in range(n):
                    if i:  # the first token comes right after prefill; the others at the batch's pace
                        t += load.token_delay * (1 + load.slowdown * (load.running - 1))
                        await asyncio.sleep(max(t - time.perf_counter(), 0.0))
                    send(_sse(_chunk(chat, i)))
                    await writer.drain()
            finally:
                load.running -= 1
        send(_sse({"id": "x", "choices": [], "usage": {"prompt_tokens": p_tokens, "completion_tokens": n,
                                                        "total_tokens": p_tokens + n}}))
        send(b"data: [DONE]\n\n")
        writer.write(b"0\r\n\r\n")
        load.served += 1


@dataclass
class Running:
    url: str
    load: Load
    loop: asyncio.AbstractEventLoop
    thread: threading.Thread

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


def start(slots: int = 2, token_delay: float = 0.01, prefill: float = 0.0, slowdown: float = 0.1,
          port: int = 0) -> Running:
    """Serve on 127.0.0.1 (a free port by default) in a daemon thread with its own event loop."""
    load = Load(slots, token_delay, prefill, slowdown)
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    bound: list[int] = []

    def main() -> None:
        asyncio.set_event_loop(loop)
        server = loop.run_until_complete(asyncio.start_server(Server(load).handle, "127.0.0.1", port, backlog=1024))
        bound.append(server.sockets[0].getsockname()[1])
        ready.set()
        loop.run_forever()
        server.close()

    thread = threading.Thread(target=main, name="loaded-server", daemon=True)
    thread.start()
    ready.wait(10)
    return Running(f"http://127.0.0.1:{bound[0]}", load, loop, thread)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--slots", type=int, default=2)
    p.add_argument("--token-delay", type=float, default=0.01)
    p.add_argument("--prefill", type=float, default=0.0)
    p.add_argument("--slowdown", type=float, default=0.1)
    a = p.parse_args()
    load = Load(a.slots, a.token_delay, a.prefill, a.slowdown)

    async def serve() -> None:
        server = await asyncio.start_server(Server(load).handle, "127.0.0.1", a.port, backlog=1024)
        print(server.sockets[0].getsockname()[1], flush=True)
        await server.serve_forever()

    asyncio.run(serve())


if __name__ == "__main__":
    main()
