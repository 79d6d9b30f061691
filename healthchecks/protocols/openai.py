"""OpenAI-compatible API (vLLM, llama.cpp's llama-server, Ollama's /v1, hosted routers)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from . import Http, ProtocolError


async def models(http: Http) -> list[str]:
    _, body, _ = await http.request("GET", "/v1/models")
    data = body.get("data") if isinstance(body, dict) else None
    if not isinstance(data, list):
        raise ProtocolError("GET /v1/models: answer has no 'data' list")
    return [str(m.get("id")) for m in data if isinstance(m, dict)]


def chat_payload(model: str, prompt: str, max_tokens: int, stream: bool, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "model": model,
        "messages": [{"role": "user", "content": prompt}],
        "max_tokens": max_tokens,
        "temperature": 0,
        "stream": stream,
        **extra,
    }
    if stream:
        body["stream_options"] = {"include_usage": True}
    return body


def completion_payload(model: str, prompt: str, max_tokens: int, stream: bool, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"model": model, "prompt": prompt, "max_tokens": max_tokens, "temperature": 0,
                            "stream": stream, **extra}
    if stream:
        body["stream_options"] = {"include_usage": True}
    return body


async def chat(http: Http, model: str, prompt: str, max_tokens: int = 8) -> tuple[str, dict[str, Any]]:
    """Non-streaming chat completion: (text, usage)."""
    _, body, _ = await http.request("POST", "/v1/chat/completions",
                                    json_body=chat_payload(model, prompt, max_tokens, False))
    try:
        text = body["choices"][0]["message"]["content"] or ""
    except (KeyError, IndexError, TypeError):
        raise ProtocolError("chat completion: answer has no choices[0].message.content") from None
    usage = body.get("usage") or {}
    return str(text), usage


def chunk_text(event: dict[str, Any]) -> str | None:
    """The text of a streamed chunk carrying choices (chat delta or completion text), else None."""
    choices = event.get("choices")
    if not choices:
        return None
    c = choices[0]
    if "delta" in c:
        return str((c.get("delta") or {}).get("content") or "")
    return str(c.get("text") or "")


async def stream(http: Http, path: str, payload: dict[str, Any]) -> AsyncIterator[tuple[float, dict[str, Any]]]:
    async for ts, event in http.stream(path, payload, "sse"):
        if event is not None:
            yield ts, event
