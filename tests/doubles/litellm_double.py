"""The LiteLLM proxy's replies, replayed: every request ``healthcheck gateway=URL`` makes answered with what the REAL
LiteLLM 1.110.2 proxy answered to it (tests/fixtures/gateway/lab.json, captured by capture_lab.py from a gateway
configured by healthchecks/gateway.py's own renderer: a live llama-server host ``live``, a host ``dead`` whose port
nothing listens on, background health checks on, and the Hugging Face Inference Providers fallback, whose
deployment LiteLLM's ``GET /health`` does not list).

A reply is chosen by method, path (query left out) and, for ``POST /v1/chat/completions``, the requested model and
whether it streams; the ``Authorization`` header picks the keyless (401) or made-up-key (400 no_db_connection)
reply as LiteLLM gives them. Status, LiteLLM's ``x-litellm-*`` headers and body are the captured ones.

``without_dead=True`` plays the same gateway without the ``dead`` host: its routes and deployments are left out of
``/v1/models``, ``/model/info`` and ``/health`` (every entry of them names its api_base or route), which is what
LiteLLM answers for that config: a healthy lab gateway with its HF fallback.

Run alone: ``python tests/doubles/litellm_double.py PORT [--without-dead]`` (the master key is ``sk-master``)."""

from __future__ import annotations

import contextlib
import copy
import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from threading import Thread
from typing import Any, ClassVar

LAB = Path(__file__).resolve().parent.parent / "fixtures" / "gateway" / "lab.json"
MASTER_KEY = "sk-master"  # what capture_lab.py wrote in place of the real master key
DEAD_BASE = "http://127.0.0.1:8000/v1"  # the dead host's llama.cpp (capture_lab.py's fixed port)
DEAD_MODEL = "smollm2:dead"
CHAT = "/v1/chat/completions"


def load(*, without_dead: bool = False) -> dict[str, Any]:
    """The captured replies, by key (``GET /health``, ``POST /v1/chat/completions MODEL stream``...)."""
    replies: dict[str, Any] = copy.deepcopy(json.loads(LAB.read_text())["replies"])
    if not without_dead:
        return replies

    def dead_route(name: str) -> bool:
        return name == DEAD_MODEL or name.startswith(DEAD_MODEL + "@")

    models = replies["GET /v1/models"]["body"]
    models["data"] = [m for m in models["data"] if not dead_route(m["id"])]
    info = replies["GET /model/info"]["body"]
    info["data"] = [d for d in info["data"] if d["litellm_params"].get("api_base") != DEAD_BASE]
    health = replies["GET /health"]["body"]
    for key in ("healthy_endpoints", "unhealthy_endpoints"):
        health[key] = [e for e in health[key] if e.get("api_base") != DEAD_BASE]
        health[key.replace("endpoints", "count")] = len(health[key])
    return {k: v for k, v in replies.items() if not (k.startswith(f"POST {CHAT} ") and dead_route(k.split()[2]))}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    replies: ClassVar[dict[str, Any]] = {}

    def log_message(self, *args: Any) -> None:
        pass

    def answer(self, reply: dict[str, Any]) -> None:
        data = (json.dumps(reply["body"]) if "body" in reply else reply["text"]).encode()
        self.send_response(reply["status"])
        self.send_header("Content-Type", reply.get("content_type") or "application/json")
        for k, v in reply.get("headers", {}).items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def who(self) -> str:
        """"" (the master key), ``nokey`` or ``madeup`` (any other key)."""
        auth = self.headers.get("Authorization")
        if auth is None:
            return "nokey"
        return "" if auth == f"Bearer {MASTER_KEY}" else "madeup"

    def reply(self, key: str) -> None:
        found = self.replies.get(key)
        if found is None:
            self.answer({"status": 404, "body": {"detail": "Not Found"}})
        else:
            self.answer(found)

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        who = self.who()
        if path in ("/health/liveliness", "/health/readiness"):  # LiteLLM's probes take no key
            return self.reply(f"GET {path}")
        if who:
            return self.reply(f"GET /v1/models {who}" if who == "nokey" else f"POST {CHAT} smollm2:135m madeup")
        return self.reply(f"GET {path}")

    def do_POST(self) -> None:
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        path = self.path.split("?", 1)[0]
        if path != CHAT:
            return self.reply(f"POST {path}")
        try:
            body = json.loads(raw)
        except ValueError:
            body = {}
        who = self.who()
        if who:
            return self.reply(f"POST {CHAT} smollm2:135m {who}")
        model = str(body.get("model", ""))
        key = f"POST {CHAT} {model}" + (" stream" if body.get("stream") else "")
        if key not in self.replies:  # a model the gateway does not serve: LiteLLM's 400 names it
            return self.answer({"status": 400, "body": {"error": {
                "message": f"Invalid model name passed in model={model}", "type": "invalid_request_error",
                "param": None, "code": "400"}}})
        return self.reply(key)


def serve(*, without_dead: bool = False, port: int = 0, thread: bool = True) -> ThreadingHTTPServer:
    """Start the double on 127.0.0.1 (in a daemon thread unless ``thread=False``: then call serve_forever)."""
    handler = type("BoundHandler", (Handler,), {"replies": load(without_dead=without_dead)})
    server = ThreadingHTTPServer(("127.0.0.1", port), handler)
    if thread:
        Thread(target=server.serve_forever, daemon=True).start()
    return server


if __name__ == "__main__":
    srv = serve(without_dead="--without-dead" in sys.argv[2:], port=int(sys.argv[1]), thread=False)
    print(f"LiteLLM double at http://127.0.0.1:{srv.server_address[1]} (master key {MASTER_KEY})", flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        srv.serve_forever()
