"""Property tests: whatever bytes or JSON a server streams or answers, the readers end in a verdict or a
one-line ProtocolError, never another exception (a traceback in the CLIs). Driven through httpx's
MockTransport, so the real ``Http`` plumbing (status handling, SSE/NDJSON splitting, decoding) runs."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from healthchecks.check import Options, check_endpoint
from healthchecks.endpoints.url import Endpoint
from healthchecks.engines import ENGINES
from healthchecks.engines.base import RequestParams, openai_request, openai_stream_check
from healthchecks.engines.ollama import generate_request
from healthchecks.errors import ProtocolError
from healthchecks.protocols import Http
from healthchecks.protocols import ollama as ol
from healthchecks.protocols import openai as oa

pytestmark = pytest.mark.unit
FAST = settings(max_examples=150, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=20,
)
# events shaped like the real ones, with any value in any place (the likely surprises)
chunk_like = st.fixed_dictionaries({}, optional={
    "choices": st.one_of(json_values, st.lists(st.fixed_dictionaries({}, optional={
        "delta": st.one_of(json_values, st.fixed_dictionaries({}, optional={
            "content": json_values, "reasoning_content": json_values, "reasoning": json_values})),
        "text": json_values, "message": json_values}), max_size=2)),
    "usage": st.one_of(json_values, st.fixed_dictionaries({}, optional={
        "completion_tokens": json_values, "prompt_tokens": json_values})),
    "error": json_values,
})
ndjson_like = st.fixed_dictionaries({}, optional={
    "message": st.one_of(json_values, st.fixed_dictionaries({}, optional={"content": json_values,
                                                                        "thinking": json_values})),
    "response": json_values, "done": st.one_of(st.booleans(), json_values), "eval_count": json_values,
    "prompt_eval_count": json_values, "eval_duration": json_values, "error": json_values,
})


def _run(coro: Any) -> Any:
    return asyncio.run(coro)


def _http(body: bytes, status: int = 200, ctype: str = "text/event-stream") -> Http:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, content=body, headers={"content-type": ctype})
    client = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    return Http("http://double.invalid", 5.0, None, client)


async def _drain(http: Http, fmt: str, strict: bool) -> None:
    try:
        async for _ in http.stream("/v1/chat/completions", {}, fmt, strict=strict):
            pass
    except ProtocolError as exc:
        assert "\n" not in exc.reason and exc.reason
    finally:
        await http.client.aclose()


def _sse(events: list[Any], done: bool) -> bytes:
    body = b"".join(b"data: " + json.dumps(e).encode() + b"\n\n" for e in events)
    return body + (b"data: [DONE]\n\n" if done else b"")


@FAST
@given(st.binary(max_size=400), st.sampled_from(["sse", "ndjson"]), st.booleans())
def test_arbitrary_bytes_as_a_stream(body: bytes, fmt: str, strict: bool) -> None:
    _run(_drain(_http(body), fmt, strict))


@FAST
@given(st.lists(json_values | chunk_like, max_size=6), st.booleans())
def test_arbitrary_json_events_through_the_health_check(events: list[Any], done: bool) -> None:
    async def go() -> None:
        http = _http(_sse(events, done))
        try:
            status, reason = await openai_stream_check(http, "m", 8, "")
            assert status in ("pass", "fail") and "\n" not in reason
        except ProtocolError as exc:
            assert exc.reason and "\n" not in exc.reason
        finally:
            await http.client.aclose()
    _run(go())


@FAST
@given(st.lists(json_values | chunk_like, max_size=6), st.booleans(), st.sampled_from(["chat", "completions"]))
def test_arbitrary_json_events_through_the_benchmark_request(events: list[Any], done: bool, api: str) -> None:
    async def go() -> None:
        http = _http(_sse(events, done))
        try:
            res = await openai_request(http, api, "m", "hi", RequestParams(max_tokens=4, request_timeout=5))
            assert res.success or res.error
        finally:
            await http.client.aclose()
    _run(go())


@FAST
@given(st.lists(json_values | ndjson_like, max_size=6))
def test_arbitrary_ndjson_lines_through_ollama_readers(lines: list[Any]) -> None:
    body = b"".join(json.dumps(x).encode() + b"\n" for x in lines)

    async def go() -> None:
        http = _http(body, ctype="application/x-ndjson")
        try:
            res = await generate_request(http, "m", "hi", RequestParams(max_tokens=4, request_timeout=5))
            assert res.success or res.error
            for _, fn in ENGINES["ollama"].function_steps(http, "m", 4)[:2]:
                try:
                    status, reason = await fn()
                    assert status in ("pass", "fail", "warn") and "\n" not in reason
                except ProtocolError as exc:
                    assert exc.reason and "\n" not in exc.reason
        finally:
            await http.client.aclose()
    _run(go())


@FAST
@given(json_values | chunk_like | ndjson_like)
def test_pure_readers_take_any_json(value: Any) -> None:
    parts = oa.chunk_parts(value)
    assert parts is None or all(isinstance(p, str) for p in parts)
    assert oa.chunk_text(value) is None or isinstance(oa.chunk_text(value), str)
    assert isinstance(oa.usage_of(value), dict)
    assert all(isinstance(p, str) for p in oa.message_parts(value))
    assert all(isinstance(p, str) for p in ol.message_parts(value))


@settings(max_examples=60, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(["vllm", "llamacpp", "ollama", "sglang", "openai"]), st.data())
def test_a_whole_check_survives_any_answers(engine: str, data: st.DataObject) -> None:
    """Every path of a server answers arbitrary JSON (or bytes) with an arbitrary status: the check returns
    a report whose rows carry one-line reasons; nothing escapes."""
    answers: dict[str, tuple[int, bytes]] = {}

    def handler(request: httpx.Request) -> httpx.Response:
        key = f"{request.method} {request.url.path}"
        if key not in answers:
            status = data.draw(st.sampled_from([200, 200, 200, 400, 401, 404, 500, 503]), label=key)
            kind = data.draw(st.sampled_from(["json", "sse", "bytes"]), label=key + " kind")
            if kind == "json":
                body = json.dumps(data.draw(json_values | chunk_like | ndjson_like, label=key + " body")).encode()
            elif kind == "sse":
                body = _sse(data.draw(st.lists(json_values | chunk_like, max_size=3)), data.draw(st.booleans()))
            else:
                body = data.draw(st.binary(max_size=60), label=key + " bytes")
            answers[key] = (status, body)
        status, body = answers[key]
        return httpx.Response(status, content=body)

    async def go() -> None:
        async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
            ep = Endpoint(engine=engine, url="http://double.invalid:8000", model=None)
            report = await check_endpoint(ep, Options(timeout=5, diagnose=False), client)
        assert report.checks
        for c in report.checks:
            assert c.status in ("pass", "fail", "warn", "skip") and "\n" not in c.reason
            assert not c.reason.startswith("unexpected answer"), c  # every shape is read, none is a surprise
    _run(go())
