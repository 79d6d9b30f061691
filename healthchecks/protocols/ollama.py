"""Ollama's native API (docs/api.md): NDJSON streaming, durations in nanoseconds.

Readers accept any JSON: a shape they do not expect counts as "no text", never as an exception."""

from __future__ import annotations

from typing import Any

from . import Http, ProtocolError


async def tags(http: Http) -> list[str]:
    _, body, _ = await http.request("GET", "/api/tags")
    models = body.get("models") if isinstance(body, dict) else None
    if not isinstance(models, list):
        raise ProtocolError("GET /api/tags: answer has no 'models' list")
    names = (m.get("name") or m.get("model") for m in models if isinstance(m, dict))
    return [n for n in names if isinstance(n, str) and n]


async def ps(http: Http) -> list[dict[str, Any]]:
    _, body, _ = await http.request("GET", "/api/ps")
    models = body.get("models") if isinstance(body, dict) else None
    if not isinstance(models, list):
        raise ProtocolError("GET /api/ps: answer has no 'models' list")
    return [m for m in models if isinstance(m, dict)]


async def version(http: Http) -> str | None:
    _, body, _ = await http.request("GET", "/api/version")
    v = body.get("version") if isinstance(body, dict) else None
    return v if isinstance(v, str) else None


def same_model(a: str, b: str) -> bool:
    """Ollama names: ``llama3`` is ``llama3:latest``."""
    def norm(n: str) -> str:
        return n if ":" in n else n + ":latest"
    return norm(a) == norm(b)


def chat_payload(model: str, prompt: str, num_predict: int, *, stream: bool, **options: Any) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": prompt}], "stream": stream,
            "options": {"num_predict": num_predict, "temperature": 0, **options}}


def generate_payload(model: str, prompt: str, num_predict: int, *, stream: bool) -> dict[str, Any]:
    return {"model": model, "prompt": prompt, "stream": stream,
            "options": {"num_predict": num_predict, "temperature": 0}}


def message_parts(event: Any) -> tuple[str, str]:
    """(content, thinking) of a /api/chat answer or NDJSON line (thinking models fill ``thinking`` first)."""
    msg = event.get("message") if isinstance(event, dict) else None
    if not isinstance(msg, dict):
        return "", ""
    content, thinking = msg.get("content"), msg.get("thinking")
    return (content if isinstance(content, str) else ""), (thinking if isinstance(thinking, str) else "")


async def chat(http: Http, model: str, prompt: str, num_predict: int = 8, **extra: Any) -> dict[str, Any]:
    body = chat_payload(model, prompt, num_predict, stream=False)
    body.update(extra)
    _, answer, _ = await http.request("POST", "/api/chat", json_body=body)
    if not isinstance(answer, dict) or "message" not in answer:
        raise ProtocolError("POST /api/chat: answer has no 'message'")
    return answer
