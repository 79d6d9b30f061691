"""An imitation of Hugging Face's Inference Providers router (``https://router.huggingface.co/v1``), for tests
on machines without network. Built from Hugging Face's documentation (huggingface/hub-docs:
docs/inference-providers/index.md, hub-api.md, pricing.md) and what the router is seen to answer:

- ``GET /v1/models``: OpenAI's list, each model with ``providers[]`` entries: ``provider``, ``status``
  (``live``, ``error``; the Hub also uses ``staging``), ``context_length``, ``pricing`` {input, output} (USD per
  million tokens), ``supports_tools``, ``supports_structured_output``, ``first_token_latency_ms`` and
  ``throughput`` (HF's latest validation probe), ``is_model_author``. Public: no token needed, but a token that
  is sent must be valid. ``GET /v1/models/{org}/{name}``: one entry.
- ``POST /v1/chat/completions`` (OpenAI-compatible, SSE with ``data: [DONE]``, ``stream_options``):
  the model may carry a suffix: ``:fastest`` (highest throughput; also the default with no suffix),
  ``:cheapest`` (lowest output price), ``:preferred`` (the account's preference order), ``:<provider>``.
  Policies skip providers whose status is not ``live`` (the router's automatic failover).
- Every answer has ``x-request-id``; answers that reached a provider name it in ``x-inference-provider``.
- Errors, in one of two envelopes (``envelope="openai"``: ``{"error": {"message", "type", "code"}}``;
  ``envelope="bare"``: ``{"error": "..."}``): 401 invalid token, 403 token without the "Make calls to Inference
  Providers" permission (``permission_error``), 403 gated model (``X-Error-Code: GatedRepo``), 402 credits
  exhausted, 429 with ``Retry-After``, 400 ``model_not_supported`` (no provider the account has enabled serves
  the model, though ``/v1/models`` lists it; or the named provider does not), 5xx from a failing provider.

Provider behaviours (per model): ``ok``; ``fail:503`` (always that status); ``slow:S`` (S seconds before the
answer's headers); ``anon`` (answers without ``x-inference-provider``, as behind a proxy that strips it);
``ratelimit:K:S`` (every K-th request of that provider passes, the others get 429 with
``Retry-After: S``); ``cut`` (the stream stops mid-answer). Text is one word per token, ``token_delay`` apart.

Run alone: ``python tests/doubles/hf_router.py --port 8090 --token-file FILE`` (the file's token is valid).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

WORDS = ("four is the answer because two plus two makes four and nothing else in this little lab of ours "
         "ever changes that").split()


@dataclass
class Provider:
    name: str
    status: str = "live"
    price_in: float | None = 0.2
    price_out: float | None = 0.6
    ttft_ms: float | None = 500.0  # HF's probe figure, reported in /v1/models
    throughput: float | None = 40.0  # HF's probe figure; :fastest picks the highest
    behaviour: str = "ok"
    first_delay: float = 0.005  # seconds before the first token (what the double really does)
    token_delay: float = 0.002
    count: int = 0  # requests this provider received

    def entry(self) -> dict[str, Any]:
        e: dict[str, Any] = {"provider": self.name, "status": self.status, "is_model_author": False}
        if self.status == "live":
            e["context_length"] = 32768
            e["supports_tools"] = True
            e["supports_structured_output"] = False
            if self.price_in is not None and self.price_out is not None:
                e["pricing"] = {"input": self.price_in, "output": self.price_out}
            if self.ttft_ms is not None:
                e["first_token_latency_ms"] = self.ttft_ms
            if self.throughput is not None:
                e["throughput"] = self.throughput
        return e


@dataclass
class Model:
    id: str
    providers: list[Provider]
    gated: bool = False

    def entry(self) -> dict[str, Any]:
        owner = self.id.split("/")[0]
        return {"id": self.id, "object": "model", "created": 1_760_000_000, "owned_by": owner,
                "architecture": {"input_modalities": ["text"], "output_modalities": ["text"]},
                "providers": [p.entry() for p in self.providers]}


@dataclass
class Token:
    inference: bool = True  # the fine-grained "Make calls to Inference Providers" permission
    credits: bool = True
    gated_access: bool = False
    disabled: frozenset[str] = frozenset()  # providers this account switched off in its settings


@dataclass
class Seen:
    """One chat completion the router received (for tests: attempts, suffixes, that a token was sent)."""

    model: str
    provider: str | None
    status: int
    token_valid: bool
    at: float
    request_id: str = ""  # the x-request-id this answer carried


@dataclass
class Router:
    models: dict[str, Model]
    tokens: dict[str, Token]
    preferred: list[str] = field(default_factory=list)  # the account's provider preference order
    envelope: str = "openai"
    seen: list[Seen] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def attempts(self, model_prefix: str) -> list[Seen]:
        with self.lock:
            return [s for s in self.seen if s.model.startswith(model_prefix)]


def default_models() -> dict[str, Model]:
    """The catalogue the tests use: one model per situation."""
    models = [
        Model("acme/chat-7b", [
            Provider("together", price_in=0.2, price_out=0.6, ttft_ms=300, throughput=60,
                     first_delay=0.004, token_delay=0.001),
            Provider("novita", price_in=0.1, price_out=0.3, ttft_ms=700, throughput=30,
                     first_delay=0.1, token_delay=0.003),
            Provider("featherless-ai", status="error"),
            Provider("fireworks-ai", price_in=0.3, price_out=0.9, ttft_ms=400, throughput=20, behaviour="fail:503"),
        ]),
        Model("acme/flaky-8b", [
            Provider("sambanova", throughput=90, behaviour="fail:503"),
            Provider("slowpoke", throughput=10, behaviour="slow:3"),
            Provider("groq", throughput=80, behaviour="ratelimit:2:1"),
            Provider("hyperbolic", throughput=70, behaviour="ratelimit:1000000:30"),
            Provider("cutter", throughput=5, behaviour="cut"),
            Provider("nebius", throughput=50),
            Provider("hidden", throughput=1, behaviour="anon"),
        ]),
        Model("acme/gated-2b", [Provider("together")], gated=True),
        Model("acme/down-1b", [Provider("novita", status="error"), Provider("together", status="error")]),
    ]
    return {m.id: m for m in models}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    router: Router

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def handle(self) -> None:
        with contextlib.suppress(ConnectionResetError, BrokenPipeError):  # a client that gave up (its timeout)
            super().handle()

    # -- answers -------------------------------------------------------------------------------------------
    def _headers(self, status: int, ctype: str, provider: str | None, extra: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("x-request-id", self._rid)
        if provider:
            self.send_header("x-inference-provider", provider)
        for k, v in (extra or {}).items():
            self.send_header(k, v)

    def _json(self, status: int, obj: Any, provider: str | None = None, extra: dict[str, str] | None = None) -> None:
        body = json.dumps(obj).encode()
        self._headers(status, "application/json", provider, extra)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _error(self, status: int, message: str, typ: str, code: str | None, provider: str | None = None,
               extra: dict[str, str] | None = None) -> None:
        if self.router.envelope == "bare":
            obj: Any = {"error": message}
        else:
            obj = {"error": {"message": message, "type": typ, "param": None, "code": code}}
        self._json(status, obj, provider, extra)

    # -- auth ----------------------------------------------------------------------------------------------
    def _token(self) -> tuple[str | None, Token | None]:
        auth = self.headers.get("Authorization") or ""
        if not auth.startswith("Bearer "):
            return None, None
        raw = auth[len("Bearer "):].strip()
        return raw, self.router.tokens.get(raw)

    def _reject_bad_token(self) -> bool:
        raw, tok = self._token()
        if raw is not None and tok is None:
            self._error(401, "Invalid credentials in Authorization header", "authentication_error",
                        "invalid_api_key")
            return True
        return False

    # -- routes --------------------------------------------------------------------------------------------
    def do_GET(self) -> None:
        self._rid = uuid.uuid4().hex
        path = urlsplit(self.path).path
        if self._reject_bad_token():
            return
        if path == "/v1/models":
            self._json(200, {"object": "list", "data": [m.entry() for m in self.router.models.values()]})
        elif path.startswith("/v1/models/"):
            model = self.router.models.get(path[len("/v1/models/"):])
            if model is None:
                self._error(404, "Model not found", "invalid_request_error", "model_not_found")
            else:
                self._json(200, model.entry())
        else:
            self._error(404, "Not Found", "invalid_request_error", None)

    def do_POST(self) -> None:
        self._rid = uuid.uuid4().hex  # one id per request: in its x-request-id header and in Router.seen
        path = urlsplit(self.path).path
        n = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(n) if n else b""
        if path != "/v1/chat/completions":
            self._error(404, "Not Found", "invalid_request_error", None)
            return
        token, tok = self._token()
        if tok is None:
            self._record("", None, 401, False)
            msg = "Invalid credentials in Authorization header" if token else "You must provide an API key"
            self._error(401, msg, "authentication_error", "invalid_api_key")
            return
        try:
            body = json.loads(raw or b"{}")
            wanted = str(body["model"])
            messages = body["messages"]
            assert isinstance(messages, list)
        except (ValueError, KeyError, AssertionError):
            self._error(400, "Invalid request body", "invalid_request_error", "invalid_body")
            return
        self._chat(body, wanted, tok)

    def _record(self, model: str, provider: str | None, status: int, valid: bool) -> None:
        with self.router.lock:
            self.router.seen.append(Seen(model, provider, status, valid, time.time(), self._rid))

    def _chat(self, body: dict[str, Any], wanted: str, tok: Token) -> None:
        r = self.router
        if not tok.inference:
            self._record(wanted, None, 403, True)
            self._error(403, "This authentication method does not have sufficient permissions to call Inference "
                             "Providers on behalf of user lab-user", "permission_error", "insufficient_permissions")
            return
        base, sep, suffix = wanted.rpartition(":")
        if not sep:
            base, suffix = wanted, "fastest"
        model = r.models.get(base)
        if model is None:
            self._record(wanted, None, 400, True)
            self._error(400, f"The requested model '{base}' is not supported by any provider you have enabled.",
                        "invalid_request_error", "model_not_supported")
            return
        if model.gated and not tok.gated_access:
            self._record(wanted, None, 403, True)
            self._error(403, f"Access to model {base} is restricted and you are not in the authorized list. "
                             f"Visit https://huggingface.co/{base} to ask for access.", "invalid_request_error",
                        "gated_repo", extra={"X-Error-Code": "GatedRepo"} if r.envelope == "openai" else None)
            return
        if not tok.credits:
            self._record(wanted, None, 402, True)
            self._error(402, "You have exceeded your monthly included credits for Inference Providers. Subscribe "
                             "to PRO to get 20x more monthly included credits.", "insufficient_quota",
                        "insufficient_quota")
            return
        provider = self._pick(model, suffix, tok)
        if provider is None:
            self._record(wanted, None, 400, True)
            if suffix in ("fastest", "cheapest", "preferred"):
                msg = f"The requested model '{base}' is not supported by any provider you have enabled."
            else:
                msg = f"Model {base} is not supported by provider {suffix}"
            self._error(400, msg, "invalid_request_error", "model_not_supported")
            return
        self._serve(body, wanted, provider)

    def _pick(self, model: Model, suffix: str, tok: Token) -> Provider | None:
        """The provider for a suffix, among those the account has enabled (policies: live ones only)."""
        enabled = [p for p in model.providers if p.name not in tok.disabled]
        live = [p for p in enabled if p.status == "live"]
        if suffix == "fastest":
            return max(live, key=lambda p: p.throughput or 0, default=None)
        if suffix == "cheapest":
            return min(live, key=lambda p: p.price_out if p.price_out is not None else 1e9, default=None)
        if suffix == "preferred":
            order = {name: i for i, name in enumerate(self.router.preferred)}
            return min(live, key=lambda p: order.get(p.name, len(order)), default=None)
        return next((p for p in enabled if p.name == suffix), None)

    def _serve(self, body: dict[str, Any], wanted: str, p: Provider) -> None:
        with self.router.lock:
            p.count += 1
            count = p.count
        kind, _, arg = p.behaviour.partition(":")
        if p.status != "live" or kind == "fail":
            status = int(arg) if kind == "fail" and arg else 503
            self._record(wanted, p.name, status, True)
            self._error(status, f"{p.name} returned {status}: upstream service unavailable", "server_error",
                        "upstream_error", provider=p.name)
            return
        if kind == "ratelimit":
            every, retry_after = arg.split(":")
            if count % int(every) != 0:
                self._record(wanted, p.name, 429, True)
                self._error(429, f"Rate limit reached for {p.name}; retry after {retry_after} seconds",
                            "rate_limit_error", "rate_limit_exceeded", provider=p.name,
                            extra={"Retry-After": retry_after})
                return
        if kind == "slow":
            time.sleep(float(arg))
        self._record(wanted, p.name, 200, True)
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # the client gave up (its timeout)
            self._answer(body, wanted, p, cut=kind == "cut", named=kind != "anon")

    def _answer(self, body: dict[str, Any], wanted: str, p: Provider, cut: bool, named: bool = True) -> None:
        n = max(1, min(int(body.get("max_tokens") or 16), len(WORDS)))
        words = WORDS[:n]
        prompt_tokens = sum(len(str(m.get("content", "")).split()) for m in body["messages"] if isinstance(m, dict))
        usage = {"prompt_tokens": prompt_tokens, "completion_tokens": n, "total_tokens": prompt_tokens + n}
        cid = f"chatcmpl-{uuid.uuid4().hex[:12]}"
        time.sleep(p.first_delay)
        if not body.get("stream"):
            self._json(200, {"id": cid, "object": "chat.completion", "created": int(time.time()), "model": wanted,
                             "choices": [{"index": 0, "finish_reason": "length" if n < len(WORDS) else "stop",
                                          "message": {"role": "assistant", "content": " ".join(words)}}],
                             "usage": usage}, provider=p.name if named else None)
            return
        self._headers(200, "text/event-stream", p.name if named else None)
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()

        def event(obj: Any) -> None:
            data = f"data: {obj if isinstance(obj, str) else json.dumps(obj)}\n\n".encode()
            self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
            self.wfile.flush()

        def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
            return {"id": cid, "object": "chat.completion.chunk", "created": int(time.time()), "model": wanted,
                    "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}

        for i, w in enumerate(words):
            event(chunk({"role": "assistant", "content": w} if i == 0 else {"content": " " + w}))
            if cut and i == 1:
                self.wfile.write(b"0\r\n\r\n")  # end the body without [DONE]
                self.wfile.flush()
                return
            time.sleep(p.token_delay)
        event(chunk({}, "length" if n < len(WORDS) else "stop"))
        if (body.get("stream_options") or {}).get("include_usage"):
            event({"id": cid, "object": "chat.completion.chunk", "model": wanted, "choices": [], "usage": usage})
        event("[DONE]")
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()


def serve(tokens: dict[str, Token], models: dict[str, Model] | None = None, preferred: list[str] | None = None,
          envelope: str = "openai", port: int = 0) -> tuple[ThreadingHTTPServer, Router]:
    """Start the router on 127.0.0.1 in a daemon thread: (server, state)."""
    router = Router(models if models is not None else default_models(), tokens, preferred or ["novita", "together"],
                    envelope)
    handler = type("BoundHandler", (Handler,), {"router": router})
    server = ThreadingHTTPServer(("127.0.0.1", port), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, router


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port", type=int, default=8090)
    ap.add_argument("--token-file", required=True, help="file holding the one valid token")
    ap.add_argument("--envelope", choices=("openai", "bare"), default="openai")
    a = ap.parse_args()
    with open(a.token_file, encoding="utf-8") as fh:
        token = fh.read().strip()
    server, _ = serve({token: Token()}, envelope=a.envelope, port=a.port)
    print(f"hf router double on http://127.0.0.1:{server.server_address[1]}/v1", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        server.shutdown()


if __name__ == "__main__":
    main()
