"""A server that answers like an engine but with odd, still well-formed, values: the first path segment picks the
oddity, so one server plays many (``openai=http://127.0.0.1:PORT/strusage``, ``ollama=http://.../hugedur``).

OpenAI-style (``/MODE/v1/models``, ``/MODE/v1/chat/completions`` streamed over SSE):
  ok, strusage ("3"), negusage (-5), floatusage (2.5, 1e308), bigusage (10**30), nullusage, boolusage (true),
  cr (bare-CR line ends, allowed by the SSE spec), crlf, nospace (``data:{...}``).
Ollama-style (``/MODE/`` "Ollama is running", ``/MODE/api/tags``, ``/MODE/api/generate`` as NDJSON):
  ok, strcount (eval_count "2"), nulldur (null durations), missingcount (no eval_count), hugedur (1e308 ns),
  negcount (-2), fraccount (2.5).
Every POST's headers are recorded; ``GET /MODE/_seen`` returns the last ones.
Failures and pace (OpenAI-style, any suffix so that each test counts its own requests): ``fail4...`` answers
every 4th POST of that exact mode with a 500 (the first, smoke-bench's initial test request, succeeds), ``slow...``
sends each of its 3 tokens 0.3 s apart, ``failatN...`` answers only the Nth POST of that exact mode with a 500 (one
failed request in one run of a ``--num-runs`` series). ``GET /MODE/metrics`` is vLLM's KV-cache gauge (0.42), each
scrape counted: ``GET /MODE/_scrapes`` returns how many; ``GET /MODE/_posts`` how many POSTs that mode had.

Run: ``python tests/doubles/odd_server.py PORT`` (or :func:`serve` in a thread)."""

from __future__ import annotations

import json
import sys
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar

USAGE: dict[str, dict[str, Any]] = {
    "strusage": {"completion_tokens": "3", "prompt_tokens": "4"},
    "negusage": {"completion_tokens": -5, "prompt_tokens": -1},
    "floatusage": {"completion_tokens": 2.5, "prompt_tokens": 1e308},
    "bigusage": {"completion_tokens": 10**30, "prompt_tokens": 4},
    "nullusage": {"completion_tokens": None, "prompt_tokens": None},
    "boolusage": {"completion_tokens": True, "prompt_tokens": 4},
}
FINAL: dict[str, dict[str, Any]] = {
    "strcount": {"eval_count": "2", "eval_duration": "1000"},
    "nulldur": {"eval_duration": None, "load_duration": None},
    "hugedur": {"eval_duration": 1e308, "load_duration": 1e308, "prompt_eval_duration": 1e308},
    "negcount": {"eval_count": -2, "prompt_eval_count": -3},
    "fraccount": {"eval_count": 2.5},
}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    seen: ClassVar[dict[str, dict[str, str]]] = {}
    posts: ClassVar[Counter[str]] = Counter()
    lock = threading.Lock()

    def log_message(self, *args: Any) -> None:
        pass

    def send(self, status: int, body: str | bytes, ctype: str = "application/json") -> None:
        data = body.encode() if isinstance(body, str) else body
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def split(self) -> tuple[str, str]:
        parts = self.path.split("/", 2)
        mode = parts[1] if len(parts) > 1 else ""
        return mode, "/" + (parts[2] if len(parts) > 2 else "")

    def do_GET(self) -> None:
        mode, rest = self.split()
        if rest == "/":
            return self.send(200, "Ollama is running", "text/plain")
        if rest == "/_seen":
            return self.send(200, json.dumps(Handler.seen.get(mode, {})))
        if rest == "/_posts":
            return self.send(200, json.dumps(Handler.posts.get(mode, 0)))
        if rest == "/_scrapes":
            return self.send(200, json.dumps(Handler.posts.get(mode + "/metrics", 0)))
        if rest == "/metrics":  # vLLM's KV-cache gauge; every scrape counted per mode
            with Handler.lock:
                Handler.posts[mode + "/metrics"] += 1
            return self.send(200, "# TYPE vllm:kv_cache_usage_perc gauge\nvllm:kv_cache_usage_perc 0.42\n",
                             "text/plain")
        if rest.startswith("/v1/models"):
            return self.send(200, json.dumps({"object": "list", "data": [{"id": "m"}]}))
        if rest == "/api/tags":
            return self.send(200, json.dumps({"models": [{"name": "m:latest"}]}))
        if rest == "/api/version":
            return self.send(200, json.dumps({"version": "0.0.0"}))
        return self.send(404, '{"error": "not found"}')

    def do_POST(self) -> None:
        n = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(n)
        mode, rest = self.split()
        Handler.seen[mode] = dict(self.headers.items())
        req = json.loads(raw or b"{}")
        with Handler.lock:
            Handler.posts[mode] += 1
            nth = Handler.posts[mode]
        at = mode[6:].split("-", 1)[0] if mode.startswith("failat") else ""
        if (mode.startswith("fail4") and nth % 4 == 0) or (at.isdigit() and nth == int(at)):
            return self.send(500, '{"error": {"message": "injected failure", "type": "server_error"}}')
        if rest == "/v1/chat/completions" and mode.startswith("slow"):
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Connection", "close")
            self.end_headers()
            for t in ("a", "b", "c"):
                time.sleep(0.3)
                self.wfile.write(b"data: " + json.dumps({"choices": [{"index": 0, "delta": {"content": t}}]}).encode()
                                 + b"\n\n")
                self.wfile.flush()
            usage = {"choices": [], "usage": {"completion_tokens": 3, "prompt_tokens": 4}}
            self.wfile.write(b"data: " + json.dumps(usage).encode() + b"\n\ndata: [DONE]\n\n")
            self.close_connection = True
            return None
        if rest == "/v1/chat/completions":
            chunks: list[Any] = [{"choices": [{"index": 0, "delta": {"content": t}}]} for t in ("a", "b", "c")]
            chunks.append({"choices": [], "usage": USAGE.get(mode, {"completion_tokens": 3, "prompt_tokens": 4})})
            body = b"".join(b"data: " + json.dumps(c).encode() + b"\n\n" for c in chunks) + b"data: [DONE]\n\n"
            if mode == "crlf":
                body = body.replace(b"\n", b"\r\n")
            elif mode == "cr":
                body = body.replace(b"\n", b"\r")
            elif mode == "nospace":
                body = body.replace(b"data: ", b"data:")
            return self.send(200, body, "text/event-stream")
        if rest == "/api/generate":
            final: dict[str, Any] = {"done": True, "eval_count": 2, "prompt_eval_count": 3, "eval_duration": 1000,
                                     "prompt_eval_duration": 5, "load_duration": 1, "total_duration": 10}
            final.update(FINAL.get(mode, {}))
            if mode == "missingcount":
                final.pop("eval_count")
            lines = [{"response": "a", "done": False}, {"response": "b", "done": False}, final]
            if not req.get("stream", True):
                return self.send(200, json.dumps({"response": "ab", **final}))
            text = "".join(json.dumps(line) + "\n" for line in lines)
            return self.send(200, text, "application/x-ndjson")
        return self.send(404, '{"error": "not found"}')


class Server(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that went away mid-answer (a cancelled or interrupted run) is not the double's error


def serve(port: int = 0) -> ThreadingHTTPServer:
    """Start in a daemon thread; the caller reads ``server.server_address`` and calls ``shutdown()``."""
    ThreadingHTTPServer.allow_reuse_address = True
    server = Server(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


if __name__ == "__main__":
    ThreadingHTTPServer.allow_reuse_address = True
    Server(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
