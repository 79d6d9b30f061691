"""OpenAI-compatible API (vLLM, llama.cpp's llama-server, Ollama's /v1, hosted routers).

Every reader here takes whatever JSON a server sent: a shape it does not expect counts as "no text",
never as an exception (proxies, keep-alives and new engines send events nobody documented)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from . import Http, ProtocolError

# Where reasoning models put their first tokens: vLLM's reasoning parsers and llama-server's
# --reasoning-format (``reasoning_content``), Ollama's /v1 and newer vLLM (``reasoning``).
REASONING_FIELDS = ("reasoning_content", "reasoning")


async def models(http: Http) -> list[str]:
    _, body, _ = await http.request("GET", "/v1/models")
    data = body.get("data") if isinstance(body, dict) else None
    if not isinstance(data, list):
        raise ProtocolError("GET /v1/models: answer has no 'data' list")
    return [str(m["id"]) for m in data if isinstance(m, dict) and isinstance(m.get("id"), str | int)]


def chat_payload(model: str, prompt: str, max_tokens: int, *, stream: bool, **extra: Any) -> dict[str, Any]:
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


def completion_payload(model: str, prompt: str, max_tokens: int, *, stream: bool, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"model": model, "prompt": prompt, "max_tokens": max_tokens, "temperature": 0,
                            "stream": stream, **extra}
    if stream:
        body["stream_options"] = {"include_usage": True}
    return body


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def message_parts(msg: Any) -> tuple[str, str]:
    """(content, reasoning) of a chat message or delta; anything that is not a string counts as empty."""
    if not isinstance(msg, dict):
        return "", ""
    return _text(msg.get("content")), "".join(_text(msg.get(k)) for k in REASONING_FIELDS)


async def chat(http: Http, model: str, prompt: str, max_tokens: int = 8,
               **extra: Any) -> tuple[str, str, dict[str, Any]]:
    """Non-streaming chat completion: (content, reasoning, usage). Reasoning models answer in
    ``reasoning_content`` / ``reasoning`` first; callers count both as the answer."""
    _, body, _ = await http.request("POST", "/v1/chat/completions",
                                    json_body=chat_payload(model, prompt, max_tokens, stream=False, **extra))
    choices = body.get("choices") if isinstance(body, dict) else None
    first = choices[0] if isinstance(choices, list) and choices else None
    if not isinstance(first, dict) or not isinstance(first.get("message"), dict):
        raise ProtocolError("chat completion: answer has no choices[0].message")
    content, reasoning = message_parts(first["message"])
    return content, reasoning, usage_of(body)


def chunk_parts(event: Any) -> tuple[str, str] | None:
    """(content, reasoning) of a streamed chunk carrying choices (chat delta or completion text), else None.
    A malformed choice counts as a chunk without text."""
    choices = event.get("choices") if isinstance(event, dict) else None
    if not choices or not isinstance(choices, list):
        return None
    c = choices[0]
    if not isinstance(c, dict):
        return "", ""
    if "delta" in c:
        return message_parts(c.get("delta"))
    return _text(c.get("text")), "".join(_text(c.get(k)) for k in REASONING_FIELDS)


def chunk_text(event: Any) -> str | None:
    """The text of a streamed chunk carrying choices, reasoning tokens included (``vllm bench serve``
    counts them for TTFT too), else None."""
    parts = chunk_parts(event)
    return None if parts is None else parts[1] + parts[0]


def usage_of(event: Any) -> dict[str, Any]:
    """The ``usage`` object of an answer or chunk, {} when absent or not an object."""
    usage = event.get("usage") if isinstance(event, dict) else None
    return usage if isinstance(usage, dict) else {}


async def stream(http: Http, path: str, payload: dict[str, Any]) -> AsyncIterator[tuple[float, dict[str, Any]]]:
    async for ts, event in http.stream(path, payload, "sse"):
        if isinstance(event, dict):
            yield ts, event
