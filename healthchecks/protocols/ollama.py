"""Ollama's native API (docs/api.md): NDJSON streaming, durations in nanoseconds."""

from __future__ import annotations

from typing import Any

from . import Http, ProtocolError


async def tags(http: Http) -> list[str]:
    _, body, _ = await http.request("GET", "/api/tags")
    models = body.get("models") if isinstance(body, dict) else None
    if not isinstance(models, list):
        raise ProtocolError("GET /api/tags: answer has no 'models' list")
    return [str(m.get("name") or m.get("model")) for m in models if isinstance(m, dict)]


async def ps(http: Http) -> list[dict[str, Any]]:
    _, body, _ = await http.request("GET", "/api/ps")
    models = body.get("models") if isinstance(body, dict) else None
    if not isinstance(models, list):
        raise ProtocolError("GET /api/ps: answer has no 'models' list")
    return [m for m in models if isinstance(m, dict)]


def same_model(a: str, b: str) -> bool:
    """Ollama names: ``llama3`` is ``llama3:latest``."""
    def norm(n: str) -> str:
        return n if ":" in n else n + ":latest"
    return norm(a) == norm(b)


def chat_payload(model: str, prompt: str, num_predict: int, stream: bool, **options: Any) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": prompt}], "stream": stream,
            "options": {"num_predict": num_predict, "temperature": 0, **options}}


def generate_payload(model: str, prompt: str, num_predict: int, stream: bool) -> dict[str, Any]:
    return {"model": model, "prompt": prompt, "stream": stream,
            "options": {"num_predict": num_predict, "temperature": 0}}


async def chat(http: Http, model: str, prompt: str, num_predict: int = 8) -> dict[str, Any]:
    _, body, _ = await http.request("POST", "/api/chat", json_body=chat_payload(model, prompt, num_predict, False))
    if not isinstance(body, dict) or "message" not in body:
        raise ProtocolError("POST /api/chat: answer has no 'message'")
    return body
