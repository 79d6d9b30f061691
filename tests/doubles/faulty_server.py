"""A misbehaving OpenAI-compatible server for bad-input tests. The first path segment picks the fault, so one
server serves every case: ``vllm=http://127.0.0.1:PORT/<mode>``.

Modes: ``hang`` (accepts, never answers), ``html502`` (a proxy's HTML error page), ``notjson`` (200 with text),
``truncated`` (JSON cut off), ``cutstream`` (healthy, but the connection drops mid-stream), ``nodone`` (the stream
ends cleanly without ``[DONE]``), ``empty`` (healthy, answers with empty content), ``ok`` (healthy, model ``m``;
honours ``response_format`` json_schema), ``nonobject`` (healthy but the stream carries ``data: [1]``, a JSON value
that is not an object), ``badshape`` (healthy; stream events and the model list carry odd shapes beside good ones:
``choices`` a string, a number, a ``delta`` that is not an object, ``usage`` a number), ``reasoning`` (a reasoning
model: the answer sits in ``reasoning_content``, ``content`` empty), ``embed`` (an embedding model: chat refused
with vLLM's 501, ``/v1/embeddings`` answers), ``badjson`` (ignores ``response_format``: answers plain text),
``trickle`` (healthy until a completion: then headers and a byte every 0.5 s for a minute, never an answer: an SSE
comment ``: ping`` when streamed, JSON whitespace otherwise; every read is quick, the answer never comes),
``ctrlid`` (healthy, but its model id carries a terminal escape, a bell and a NUL: ``m\x1b[31mRED\x07\x00``),
``echo401`` (healthy to GETs, but refuses every POST with 401, echoing the Authorization header it got, as some
proxies and OpenAI's own error text do).

``serve(ssl_context=...)`` serves the same over TLS.
"""

from __future__ import annotations

import json
import ssl
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

MODEL = "m"
CTRL_MODEL = "m\x1b[31mRED\x07\x00"


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _send(self, status: int, body: bytes, ctype: str = "application/json") -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _route(self) -> None:
        parts = self.path.split("/", 2)
        mode = parts[1] if len(parts) > 1 else ""
        rest = "/" + (parts[2] if len(parts) > 2 else "")
        if self.command == "POST":
            n = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(n) or b"{}")
        else:
            body = {}
        if mode == "hang":
            time.sleep(30)
            return
        if mode == "echo401" and self.command == "POST":
            got = self.headers.get("Authorization", "none")
            self._send(401, json.dumps({"error": {"message": f"Incorrect API key provided: {got}",
                                                  "type": "invalid_request_error"}}).encode())
            return
        if mode == "trickle" and rest == "/v1/chat/completions":
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream" if body.get("stream") else "application/json")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            piece = b": ping\n\n" if body.get("stream") else b" "
            for _ in range(120):
                self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
                self.wfile.flush()
                time.sleep(0.5)
            return
        if mode == "html502":
            page = b"<html><head><title>502 Bad Gateway</title></head><body><center>nginx</center></body></html>"
            self._send(502, page, "text/html")
            return
        if mode == "notjson" and rest.startswith("/v1/"):
            self._send(200, b"hello, I am not JSON", "text/plain")
            return
        if mode == "truncated" and rest.startswith("/v1/"):
            self._send(200, b'{"object": "list", "data": [{"id": "m", "obj')
            return
        if mode == "embed" and rest == "/v1/chat/completions":
            # vLLM's answer for a pooling model (chat_completion/api_router.py raises NotImplementedError -> 501)
            err = {"error": {"message": "The model does not support Chat Completions API",
                             "type": "NotImplementedError", "param": None, "code": 501}}
            self._send(501, json.dumps(err).encode())
            return
        if mode == "embed" and rest == "/v1/embeddings":
            self._send(200, json.dumps({"object": "list", "model": MODEL, "data": [
                {"object": "embedding", "index": 0, "embedding": [0.125] * 16}]}).encode())
            return
        if rest == "/v1/models" and mode == "ctrlid":
            self._send(200, json.dumps({"object": "list", "data": [{"id": CTRL_MODEL, "object": "model"}]}).encode())
            return
        if rest == "/v1/models" and mode == "badshape":
            self._send(200, json.dumps({"object": "list", "data": [1, "x", {"id": None}, {"id": MODEL}]}).encode())
            return
        if rest == "/health":
            self._send(200, b"")
        elif rest == "/v1/models":
            self._send(200, json.dumps({"object": "list", "data": [{"id": MODEL, "object": "model"}]}).encode())
        elif rest == "/v1/chat/completions":
            content = "" if mode in ("empty", "reasoning") else "four"
            if isinstance(body.get("response_format"), dict) and mode != "badjson":
                content = json.dumps({"answer": 4})
            field = "reasoning_content" if mode == "reasoning" else "content"
            if body.get("stream"):
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                pieces = [content] if mode not in ("cutstream", "nodone") else ["fo", "ur"]
                events: list[Any] = [{"choices": [{"index": 0, "delta": {field: p}, "finish_reason": None}]}
                                     for p in (["thinking about it"] if mode == "reasoning" else pieces)]
                if mode == "nonobject":
                    events.insert(0, [1])
                if mode == "badshape":
                    events[:0] = [{"choices": "x"}, {"choices": [5]}, {"choices": [{"delta": 7}]}, {"usage": 3},
                                  {"choices": [{"delta": {"content": ["a"]}}]}, {"choices": [None]}, {}]
                for ev in events:
                    data = b"data: " + json.dumps(ev).encode() + b"\n\n"
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
                    self.wfile.flush()
                if mode == "cutstream":
                    self.close_connection = True
                    return  # no [DONE], no terminating chunk: the connection just ends
                if mode == "nodone":  # a clean end of the body, but no [DONE] event
                    self.wfile.write(b"0\r\n\r\n")
                    return
                data = b"data: [DONE]\n\n"
                self.wfile.write(b"%x\r\n%s\r\n0\r\n\r\n" % (len(data), data))
                return
            message = {"role": "assistant", "content": content}
            if mode == "reasoning":
                message["reasoning_content"] = "The user asks for 2 + 2, which is four."
            answer = {"choices": [{"index": 0, "message": message}],
                      "usage": {"prompt_tokens": 3, "completion_tokens": 1 if content else 0, "total_tokens": 4}}
            self._send(200, json.dumps(answer).encode())
        else:
            self._send(404, json.dumps({"error": {"message": f"no route {rest}"}}).encode())

    do_GET = _route
    do_POST = _route


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    ssl_context: ssl.SSLContext | None = None

    def get_request(self) -> tuple[Any, Any]:
        sock, addr = super().get_request()
        if self.ssl_context is not None:  # handshake in the handler thread, not the accept loop
            sock = self.ssl_context.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
        return sock, addr

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Clients that hang up (or refuse the certificate) are normal here: no tracebacks."""


def serve(host: str = "127.0.0.1", port: int = 0, ssl_context: ssl.SSLContext | None = None) -> ThreadingHTTPServer:
    server = _Server((host, port), Handler)
    server.ssl_context = ssl_context
    threading.Thread(target=server.serve_forever, name="faulty-server", daemon=True).start()
    return server
