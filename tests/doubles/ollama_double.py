"""A protocol double of the Ollama server, for tests on machines where Ollama cannot run.

It follows Ollama's documented HTTP API (docs/api.md and docs/openai.md in ollama/ollama):
- ``GET /`` answers ``Ollama is running``; ``GET /api/version`` ``{"version": ...}``.
- ``GET /api/tags`` lists local models; ``GET /api/ps`` lists *loaded* ones with ``size_vram``
  (0 when the model runs on the CPU, which is how a silent CPU fallback shows).
- ``POST /api/pull`` streams NDJSON progress (``pulling manifest``, per-layer ``total``/``completed``,
  ``verifying sha256 digest``, ``writing manifest``, ``success``).
- ``POST /api/generate`` and ``POST /api/chat`` stream NDJSON (``stream`` defaults to true); the final
  line has ``done: true``, ``done_reason`` and the timing fields in nanoseconds (``total_duration``,
  ``load_duration``, ``prompt_eval_count``, ``prompt_eval_duration``, ``eval_count``, ``eval_duration``).
- ``GET /v1/models`` and ``POST /v1/chat/completions`` / ``/v1/completions`` (OpenAI-compatible, SSE
  with ``data: [DONE]``, ``stream_options.include_usage``).
- Errors: ``{"error": "..."}`` with 404 for an unknown model (``model "x" not found, try pulling it
  first``) and 400 for a bad request; the ``/v1`` paths use OpenAI's ``{"error": {"message", "type",
  "param", "code"}}``.

Beyond that, for the checks a lab needs: ``vram_fraction`` (``size_vram`` = that share of ``size``: 1 on a
GPU, 0 on the CPU, in between a model split across CPU and GPU as ``ollama ps`` shows ``48%/52% CPU/GPU``),
``preload`` (models already loaded at start, listed by ``/api/ps`` in load order, most recent first),
``format`` with a JSON schema on ``/api/chat`` (the answer is an instance of the schema), ``/api/embed``,
embedding-only models (``embedding=[...]``: chat and generate refused with Ollama's 400 "does not support"),
and ``api_key`` (a reverse proxy in front that wants ``Authorization: Bearer KEY`` on every path but ``/``).

Text is generated deterministically (one word per token, ``--token-delay`` seconds apart); tokens are
counted as words. Run: ``python tests/doubles/ollama_double.py --port 11434 [--cpu]``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import threading
import time
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

VERSION = "0.12.6"
WORDS = (
    "the quick brown fox jumps over a lazy dog while GPUs hum softly in the lab and every endpoint "
    "answers with tokens streamed one by one until the model decides to stop"
).split()


def _now() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


def _digest(name: str) -> str:
    return hashlib.sha256(name.encode()).hexdigest()


class Model:
    def __init__(self, name: str, size: int = 101_000_000, family: str = "llama", embedding: bool = False) -> None:
        self.name = name
        self.size = size
        self.family = family
        self.embedding = embedding
        self.digest = _digest(name)
        self.modified_at = _now()

    @property
    def details(self) -> dict[str, Any]:
        return {
            "parent_model": "",
            "format": "gguf",
            "family": self.family,
            "families": [self.family],
            "parameter_size": "134.52M",
            "quantization_level": "Q4_1",
        }

    def tag(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "model": self.name,
            "modified_at": self.modified_at,
            "size": self.size,
            "digest": self.digest,
            "details": self.details,
        }


class State:
    def __init__(self, models: list[str], pullable: list[str], gpu: bool, token_delay: float,
                 vram_fraction: float | None = None, preload: list[str] | None = None,
                 embedding: list[str] | None = None, api_key: str | None = None) -> None:
        self.models = {canonical(m): Model(canonical(m)) for m in models}
        for m in embedding or []:
            self.models[canonical(m)] = Model(canonical(m), family="bert", embedding=True)
        self.pullable = set(pullable)
        self.gpu = gpu
        self.vram_fraction = (1.0 if gpu else 0.0) if vram_fraction is None else vram_fraction
        self.token_delay = token_delay
        self.loaded: dict[str, float] = {}  # name -> expiry (monotonic seconds), in load order
        self.lock = threading.Lock()
        self.requests = 0
        self.loads: list[str] = []  # every model load, in order (a test sees what a check made Ollama load)
        self.api_key = api_key
        for m in preload or []:
            self.loaded[canonical(m)] = time.monotonic() + 300


def canonical(name: str) -> str:
    """Ollama treats ``name`` and ``name:latest`` as the same model."""
    return name if ":" in name else f"{name}:latest"


def generate_words(prompt: str, n: int) -> list[str]:
    seed = int(hashlib.sha256(prompt.encode()).hexdigest(), 16)
    return [WORDS[(seed >> (i % 200)) % len(WORDS) if i else seed % len(WORDS)] for i in range(n)]


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: OllamaDouble

    # -- plumbing -----------------------------------------------------------------------------------
    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _send(self, status: int, body: bytes, ctype: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _json(self, status: int, obj: Any) -> None:
        self._send(status, json.dumps(obj).encode(), "application/json; charset=utf-8")

    def _error(self, status: int, message: str) -> None:
        self._json(status, {"error": message})

    def _openai_error(self, status: int, message: str, etype: str = "invalid_request_error") -> None:
        self._json(status, {"error": {"message": message, "type": etype, "param": None, "code": None}})

    def _start_stream(self, ctype: str) -> None:
        self.send_response(200)
        self.send_header("Content-Type", ctype)
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()

    def _chunk(self, data: bytes) -> None:
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    def _end_stream(self) -> None:
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    def _body(self) -> dict[str, Any] | None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw or b"{}")
        except json.JSONDecodeError as exc:
            self._error(400, f"invalid character in request body: {exc.msg}")
            return None
        if not isinstance(body, dict):
            self._error(400, "json: cannot unmarshal into Go value of type api.Request")
            return None
        return body

    @property
    def st(self) -> State:
        return self.server.state

    def _find(self, name: str | None) -> Model | None:
        if not name:
            return None
        return self.st.models.get(canonical(name))

    def _load(self, model: Model) -> int:
        """Mark the model loaded (5 min keep-alive); return load_duration in ns."""
        with self.st.lock:
            first = model.name not in self.st.loaded
            self.st.loaded.pop(model.name, None)
            self.st.loaded[model.name] = time.monotonic() + 300
            self.st.requests += 1
            if first:
                self.st.loads.append(model.name)
        return 250_000_000 if first else 150_000

    # -- routes -------------------------------------------------------------------------------------
    def do_HEAD(self) -> None:
        self.do_GET()

    def _authorised(self) -> bool:
        """The reverse proxy in front (``api_key``): every path but ``/`` needs the bearer key."""
        if self.st.api_key is None or self.path.split("?", 1)[0] == "/":
            return True
        if self.headers.get("Authorization") == f"Bearer {self.st.api_key}":
            return True
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        self._send(401, b"<html><head><title>401 Authorization Required</title></head></html>", "text/html")
        return False

    def do_GET(self) -> None:
        if not self._authorised():
            return
        path = self.path.split("?", 1)[0]
        if path == "/":
            self._send(200, b"Ollama is running", "text/plain; charset=utf-8")
        elif path == "/api/version":
            self._json(200, {"version": VERSION})
        elif path == "/api/tags":
            self._json(200, {"models": [m.tag() for m in self.st.models.values()]})
        elif path == "/api/ps":
            now = time.monotonic()
            models = []
            for name, expiry in reversed(list(self.st.loaded.items())):  # most recently used first
                if expiry < now:
                    continue
                m = self.st.models[name]
                entry = m.tag()
                entry.pop("modified_at")
                entry["expires_at"] = (datetime.now(UTC) + timedelta(seconds=expiry - now)).isoformat()
                entry["size_vram"] = int(m.size * self.st.vram_fraction)
                entry["context_length"] = 4096
                models.append(entry)
            self._json(200, {"models": models})
        elif path == "/v1/models":
            data = [
                {"id": m.name, "object": "model", "created": 1_700_000_000, "owned_by": "library"}
                for m in self.st.models.values()
            ]
            self._json(200, {"object": "list", "data": data})
        else:
            self._send(404, b"404 page not found", "text/plain")

    def do_POST(self) -> None:
        if not self._authorised():
            return
        path = self.path.split("?", 1)[0]
        routes = {
            "/api/generate": self._generate,
            "/api/chat": self._chat,
            "/api/embed": self._embed,
            "/api/pull": self._pull,
            "/v1/chat/completions": self._openai_chat,
            "/v1/completions": self._openai_completions,
        }
        handler = routes.get(path)
        if handler is None:
            self._send(404, b"404 page not found", "text/plain")
            return
        body = self._body()
        if body is not None:
            handler(body)

    def _native(self, body: dict[str, Any], prompt: str, chat: bool) -> None:
        name = body.get("model")
        if not name:
            self._error(400, "model is required")
            return
        model = self._find(name)
        if model is None:
            self._error(404, f'model "{name}" not found, try pulling it first')
            return
        if model.embedding:
            self._error(400, f'"{name}" does not support {"chat" if chat else "generate"}')
            return
        options = body.get("options") or {}
        num_predict = int(options.get("num_predict", 24))
        if num_predict < 0:
            num_predict = 128
        stream = body.get("stream", True)
        t0 = time.perf_counter_ns()
        load_ns = self._load(model)
        prompt_tokens = max(1, len(prompt.split()))
        words = generate_words(prompt, num_predict)
        prompt_eval_ns = 2_000_000 + 50_000 * prompt_tokens
        time.sleep(prompt_eval_ns / 1e9)

        def line(piece: str, done: bool) -> dict[str, Any]:
            obj: dict[str, Any] = {"model": model.name, "created_at": _now()}
            if chat:
                obj["message"] = {"role": "assistant", "content": piece}
            else:
                obj["response"] = piece
            obj["done"] = done
            return obj

        eval_start = time.perf_counter_ns()
        pieces = [(" " if i else "") + w for i, w in enumerate(words)]
        schema = body.get("format")
        if isinstance(schema, dict) or schema == "json":
            pieces = [json.dumps(instance(schema if isinstance(schema, dict) else {}))]
        if stream:
            self._start_stream("application/x-ndjson")
        for piece in pieces:
            time.sleep(self.st.token_delay)
            if stream:
                self._chunk(json.dumps(line(piece, False)).encode() + b"\n")
        end = time.perf_counter_ns()
        final = line("" if stream else "".join(pieces), True)
        final["done_reason"] = "length" if num_predict and len(words) >= num_predict else "stop"
        if not chat:
            final["context"] = list(range(1, prompt_tokens + len(words) + 1))
        final.update(
            total_duration=end - t0 + load_ns,
            load_duration=load_ns,
            prompt_eval_count=prompt_tokens,
            prompt_eval_duration=prompt_eval_ns,
            eval_count=len(words),
            eval_duration=end - eval_start,
        )
        if stream:
            self._chunk(json.dumps(final).encode() + b"\n")
            self._end_stream()
        else:
            self._json(200, final)

    def _embed(self, body: dict[str, Any]) -> None:
        model = self._find(body.get("model"))
        if model is None:
            self._error(404, f'model "{body.get("model")}" not found, try pulling it first')
            return
        inputs = body.get("input")
        texts = inputs if isinstance(inputs, list) else [inputs]
        self._load(model)
        vectors = [[round(((hash(str(t)) >> i) % 1000) / 1000, 3) for i in range(32)] for t in texts]
        self._json(200, {"model": model.name, "embeddings": vectors, "total_duration": 1_000_000,
                         "load_duration": 100_000, "prompt_eval_count": len(texts)})

    def _generate(self, body: dict[str, Any]) -> None:
        self._native(body, str(body.get("prompt", "")), chat=False)

    def _chat(self, body: dict[str, Any]) -> None:
        messages = body.get("messages") or []
        if not isinstance(messages, list):
            self._error(400, "messages must be an array")
            return
        prompt = " ".join(str(m.get("content", "")) for m in messages if isinstance(m, dict))
        self._native(body, prompt, chat=True)

    def _pull(self, body: dict[str, Any]) -> None:
        name = body.get("model") or body.get("name")
        if not name:
            self._error(400, "model is required")
            return
        name = canonical(name)
        if name not in self.st.pullable and name not in self.st.models:
            self._error(500, "pull model manifest: file does not exist")
            return
        total = 101_000_000
        digest = "sha256:" + _digest(name)
        statuses: list[dict[str, Any]] = [{"status": "pulling manifest"}]
        statuses += [
            {"status": f"pulling {digest[7:19]}", "digest": digest, "total": total, "completed": done}
            for done in (0, total // 2, total)
        ]
        statuses += [{"status": "verifying sha256 digest"}, {"status": "writing manifest"}, {"status": "success"}]
        self.st.models.setdefault(name, Model(name))
        if body.get("stream", True) is False:
            self._json(200, {"status": "success"})
            return
        self._start_stream("application/x-ndjson")
        for s in statuses:
            self._chunk(json.dumps(s).encode() + b"\n")
        self._end_stream()

    # -- OpenAI compatibility ----------------------------------------------------------------------
    def _openai(self, body: dict[str, Any], chat: bool) -> None:
        name = body.get("model")
        if not name:
            self._openai_error(400, "model is required")
            return
        model = self._find(name)
        if model is None:
            self._openai_error(404, f'model "{name}" not found, try pulling it first', "api_error")
            return
        if chat:
            messages = body.get("messages")
            if not isinstance(messages, list) or not messages:
                self._openai_error(400, "[] is too short - 'messages'")
                return
            prompt = " ".join(str(m.get("content", "")) for m in messages if isinstance(m, dict))
        else:
            prompt = str(body.get("prompt", ""))
        max_tokens = int(body.get("max_tokens") or body.get("max_completion_tokens") or 24)
        self._load(model)
        words = generate_words(prompt, max_tokens)
        pieces = [(" " if i else "") + w for i, w in enumerate(words)]
        usage = {
            "prompt_tokens": max(1, len(prompt.split())),
            "completion_tokens": len(words),
            "total_tokens": max(1, len(prompt.split())) + len(words),
        }
        rid = ("chatcmpl-" if chat else "cmpl-") + _digest(prompt + str(time.time()))[:8]
        obj = "chat.completion" if chat else "text_completion"
        created = int(time.time())
        base = {"id": rid, "created": created, "model": model.name, "system_fingerprint": "fp_ollama"}
        if not body.get("stream"):
            for _ in pieces:
                time.sleep(self.st.token_delay)
            choice: dict[str, Any] = {"index": 0, "finish_reason": "length"}
            text = "".join(pieces)
            if chat:
                choice["message"] = {"role": "assistant", "content": text}
            else:
                choice["text"] = text
            self._json(200, {**base, "object": obj, "choices": [choice], "usage": usage})
            return
        self._start_stream("text/event-stream")
        chunk_obj = obj + ".chunk" if chat else obj
        for i, piece in enumerate(pieces):
            time.sleep(self.st.token_delay)
            last = i == len(pieces) - 1
            c: dict[str, Any] = {"index": 0, "finish_reason": "length" if last else None}
            if chat:
                c["delta"] = {"role": "assistant", "content": piece}
            else:
                c["text"] = piece
            self._chunk(b"data: " + json.dumps({**base, "object": chunk_obj, "choices": [c]}).encode() + b"\n\n")
        if (body.get("stream_options") or {}).get("include_usage"):
            final = {**base, "object": chunk_obj, "choices": [], "usage": usage}
            self._chunk(b"data: " + json.dumps(final).encode() + b"\n\n")
        self._chunk(b"data: [DONE]\n\n")
        self._end_stream()

    def _openai_chat(self, body: dict[str, Any]) -> None:
        self._openai(body, chat=True)

    def _openai_completions(self, body: dict[str, Any]) -> None:
        self._openai(body, chat=False)


class OllamaDouble(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that hangs up mid-stream is normal for a server; do not print tracebacks."""

    def __init__(self, addr: tuple[str, int], state: State) -> None:
        super().__init__(addr, Handler)
        self.state = state


def instance(schema: dict[str, Any]) -> Any:
    """A small value valid for the JSON schema (objects, arrays and scalar types: what ``format`` uses)."""
    kind = schema.get("type")
    if kind == "object" or "properties" in schema:
        props = schema.get("properties") or {}
        return {k: instance(v if isinstance(v, dict) else {}) for k, v in props.items()}
    if kind == "array":
        return [instance(schema.get("items") or {})]
    return {"integer": 4, "number": 4.0, "boolean": True, "null": None}.get(str(kind), "four")


def serve(
    host: str = "127.0.0.1",
    port: int = 0,
    models: list[str] | None = None,
    gpu: bool = True,
    token_delay: float = 0.005,
    vram_fraction: float | None = None,
    preload: list[str] | None = None,
    embedding: list[str] | None = None,
    api_key: str | None = None,
) -> OllamaDouble:
    """Start the double in a background thread; ``server.server_address`` has the bound port."""
    state = State(models or ["smollm2:135m"], ["tinyllama:latest"], gpu, token_delay, vram_fraction, preload,
                  embedding, api_key)
    server = OllamaDouble((host, port), state)
    threading.Thread(target=server.serve_forever, name="ollama-double", daemon=True).start()
    return server


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=11434)
    p.add_argument("--model", action="append", help="a local model (repeatable); default smollm2:135m")
    p.add_argument("--cpu", action="store_true", help="report size_vram 0 (CPU fallback)")
    p.add_argument("--token-delay", type=float, default=0.005)
    a = p.parse_args()
    state = State(a.model or ["smollm2:135m"], ["tinyllama:latest"], not a.cpu, a.token_delay)
    OllamaDouble((a.host, a.port), state).serve_forever()


if __name__ == "__main__":
    main()
