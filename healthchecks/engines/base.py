"""The engine interface. One subclass per engine (``healthchecks/engines/<name>.py``) owns everything specific
to that engine; ``check.py``, ``bench.py``, ``diagnose.py``, ``endpoints.py`` and ``preflight.py`` speak only
to this interface. The base class is the plain OpenAI-compatible server (``openai=URL``).
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import httpx

from ..errors import ProtocolError
from ..metrics import RequestResult, token_count
from ..protocols import Http
from ..protocols import openai as oa
from ..server_metrics import ServerMetric, parse, wanted
from ..verdicts import FAIL, PASS, Signature, Verdict

if TYPE_CHECKING:
    from ..endpoints.url import Endpoint

PROMPT = "Reply with one short sentence: what is 2 + 2?"
STRUCTURED_PROMPT = "What is 2 + 2? Answer in JSON."
STRUCTURED_SCHEMA: dict[str, Any] = {"type": "object", "properties": {"answer": {"type": "integer"}},
                                     "required": ["answer"], "additionalProperties": False}

Step = tuple[str, Callable[[], Awaitable[Verdict]]]  # a named check the runner times and records


@dataclass(frozen=True)
class Spec:
    """Where an engine lives in the kit: its port and the setting names that configure it, per mode.

    ``deployed`` engines are part of the compose stack *and* the Ansible roles; others are only checked
    (``compose_service`` may still name an optional compose profile)."""

    name: str
    title: str
    default_port: int | None = None
    deployed: bool = False
    compose_service: str | None = None
    env_port: str | None = None  # compose/.env
    env_model: str | None = None  # compose/.env: the name the engine serves (also the compose model label)
    env_model_path: str | None = None  # compose/.env: the model file/folder, a path under /models
    env_api_key_file: str | None = None  # compose/.env: the engine's API key file (a compose secret)
    ansible_port: str | None = None  # inventory / roles/inference_stack/defaults
    ansible_model: str | None = None
    default_url: str | None = None  # the engine's one public address: ``NAME`` alone as an endpoint means it


@dataclass(frozen=True)
class RequestParams:
    """What one benchmark request asks for, whatever the engine."""

    max_tokens: int
    ignore_eos: bool = False
    request_timeout: float = 300.0  # the whole request, seconds
    extra: dict[str, Any] = field(default_factory=dict)  # more body fields for OpenAI-style APIs
    temperature: float | None = None  # None: the payload builders' default (0)
    top_p: float | None = None
    headers: dict[str, str] = field(default_factory=dict)  # extra request headers


class Engine:
    """An OpenAI-compatible server with nothing else known about it (``openai=URL``)."""

    spec: ClassVar[Spec] = Spec("openai", "OpenAI-compatible server")
    probe_path: ClassVar[str] = "/v1/models"  # the GET that recognises it (see ``recognise``)
    apis: ClassVar[tuple[str, ...]] = ("chat", "completions")  # APIs a benchmark may use
    default_api: ClassVar[str] = "chat"
    # A request that would generate (never public on a keyed server): sent without the key, it must be refused
    auth_probe: ClassVar[tuple[str, str]] = ("POST", "/v1/chat/completions")
    # Structured output: how the engine takes a JSON schema ("response_format": OpenAI's json_schema;
    # Ollama overrides with its "format"); None: the engine has no such feature (the row is skipped)
    structured_output: ClassVar[str | None] = "response_format"
    known_features: ClassVar[bool] = False  # True: the engine documents its features; a refusal is a failure
    health_path: ClassVar[str | None] = None  # GET that answers 200 once the engine serves
    loading_status: ClassVar[int | None] = None  # what health_path answers while the model loads
    metrics_prefix: ClassVar[str | None] = None  # Prometheus series prefix on /metrics; None: no metrics
    metrics_optional: ClassVar[bool] = False  # a 404 on /metrics means "not enabled", not a failure
    kv_cache_series: ClassVar[tuple[str, ...]] = ()  # /metrics gauges of KV-cache usage (0..1)
    # What smoke-bench watches on the server during a run (server_metrics.py): running/waiting requests, KV cache,
    # cache hit rates, by this engine's own series names; () and no sample_server override: nothing is scraped
    server_metrics: ClassVar[tuple[ServerMetric, ...]] = ()
    server_metrics_path: ClassVar[str] = "/metrics"
    signatures: ClassVar[tuple[Signature, ...]] = ()  # log lines specific to this engine

    @property
    def name(self) -> str:
        return self.spec.name

    # -- command line --------------------------------------------------------------------------------------
    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        """Flags only this engine needs, added to both CLIs (``healthcheck``, ``smoke-bench``)."""

    def configure(self, args: argparse.Namespace, endpoints: list[Endpoint]) -> list[Endpoint]:
        """Apply this engine's flags to the resolved endpoints (validate them; raise ConfigError naming the
        flag). May expand one endpoint into several (e.g. one per provider choice)."""
        return endpoints

    def notes(self) -> list[str]:
        """One-line warnings about this run's settings for this engine (printed once by the CLIs)."""
        return []

    def views(self, results: list[Any]) -> list[Any]:
        """Extra rich renderables smoke-bench prints after its table (e.g. a provider report)."""
        return []

    # -- recognise -------------------------------------------------------------------------------------
    def recognise(self, status: int, text: str) -> bool:
        """Does the answer to ``GET probe_path`` come from this engine?"""
        return status in (200, 401, 403)

    # -- liveness and readiness --------------------------------------------------------------------------
    async def liveness(self, http: Http) -> Verdict:
        """``GET health_path`` when the engine has one (``loading_status``: the answer while the model
        loads), else the models list, a generic server's only standard probe."""
        if self.health_path is None:
            await oa.models(http)
            return PASS, "GET /v1/models answered"
        try:
            await http.request("GET", self.health_path, expect="text")
        except ProtocolError as exc:
            if self.loading_status is not None and exc.status == self.loading_status:
                return FAIL, f"GET {self.health_path} {exc.status}: {self.spec.title} is still loading the model"
            raise
        return PASS, f"GET {self.health_path} 200"

    async def models(self, http: Http) -> list[str]:
        return await oa.models(http)

    def same_model(self, wanted: str, served: str) -> bool:
        return wanted == served

    def missing_model_hint(self, wanted: str) -> str:
        """How to get a model the engine does not serve (e.g. Ollama's pull); "" when the engine has no such way."""
        return ""

    async def preferred_model(self, http: Http, served: list[str]) -> str | None:
        """With no --model: the served model to check (e.g. one already loaded); None: the first served."""
        return None

    async def version(self, http: Http) -> str | None:
        """The engine's version or build as it reports it; None when its API does not say."""
        return None

    def auth_body(self, model: str) -> dict[str, Any]:
        """The body of ``auth_probe``: a one-token generation (refused before it runs on a keyed server)."""
        return oa.chat_payload(model, "hi", 1, stream=False)

    # -- capabilities ------------------------------------------------------------------------------------
    async def structured_answer(self, http: Http, model: str, schema: dict[str, Any], max_tokens: int) -> str:
        """The raw text of an answer constrained to ``schema`` (``response_format`` json_schema)."""
        rf = {"type": "json_schema", "json_schema": {"name": "healthcheck", "schema": schema, "strict": True}}
        content, _, _ = await oa.chat(http, model, STRUCTURED_PROMPT, max_tokens, response_format=rf)
        return content

    async def embed(self, http: Http, model: str) -> int:
        """Embed one string: the vector's length (``POST /v1/embeddings``)."""
        _, body, _ = await http.request("POST", "/v1/embeddings", json_body={"model": model, "input": "hello"})
        data = body.get("data") if isinstance(body, dict) else None
        vec = data[0].get("embedding") if isinstance(data, list) and data and isinstance(data[0], dict) else None
        if not isinstance(vec, list) or not vec:
            raise ProtocolError("POST /v1/embeddings: answer has no data[0].embedding vector")
        return len(vec)

    # -- function ----------------------------------------------------------------------------------------
    def function_steps(self, http: Http, model: str, max_tokens: int) -> list[Step]:
        """The completion checks, in order: a plain chat completion and a streamed one."""

        async def plain() -> Verdict:
            content, reasoning, usage = await oa.chat(http, model, PROMPT, max_tokens)
            return answer_verdict(content, reasoning, "/v1/chat/completions", "reasoning_content",
                                  f"{usage.get('completion_tokens', '?')} tokens")

        return [("completion", plain), ("stream", lambda: openai_stream_check(http, model, max_tokens, ""))]

    async def gpu_residency(self, http: Http, model: str, *, expect_gpu: bool | None) -> Verdict | None:
        """Where the model lives. By default: GPU memory held by the engine's own processes (container or
        port owner, matched to nvidia-smi's compute apps); None when no row is due (see residency.verdict).
        Engines whose API reports residency override this."""
        from ..gpu import residency

        url = httpx.URL(http.base)
        port = url.port or (443 if url.scheme == "https" else 80)
        return await asyncio.to_thread(residency.verdict, self.signatures, url.host, port, expect_gpu=expect_gpu)

    # -- benchmark requests ------------------------------------------------------------------------------
    async def send(self, http: Http, api: str, model: str, prompt: str, params: RequestParams) -> RequestResult:
        """One streamed request of ``api``; timings as ``vllm bench serve`` takes them."""
        return await openai_request(http, api, model, prompt, params)

    def summarise(self, ok: list[RequestResult]) -> dict[str, float]:
        """Engine-reported timings over successful requests (beside the client's own), if any."""
        return {}

    # -- the server during a benchmark -------------------------------------------------------------------
    def metric_table(self) -> tuple[ServerMetric, ...]:
        """The figures smoke-bench reads from the server during a run (``server_metrics``; for vLLM the table in
        engines/vllm_metrics.py until engines/vllm.py names it)."""
        if self.server_metrics:
            return self.server_metrics
        from .vllm_metrics import TABLES

        return TABLES.get(self.name, ())

    def server_metrics_source(self) -> str:
        """Where the figures come from, for the report (``GET /metrics``)."""
        return f"GET {self.server_metrics_path}"

    async def sample_server(self, http: Http) -> dict[str, float]:
        """One scrape: the raw values of the table's series (Prometheus text from ``server_metrics_path``).
        Raises ProtocolError when the server does not answer it (e.g. llama-server without --metrics)."""
        _, text, _ = await http.request("GET", self.server_metrics_path, expect="text")
        return parse(text if isinstance(text, str) else "", wanted(self.metric_table()))

    def server_metrics_missing(self, reason: str) -> str:
        """The report's note when the first scrape failed (``reason``: the error's line)."""
        return f"{self.server_metrics_source()}: no answer ({reason})"

    # -- tokenizer ---------------------------------------------------------------------------------------
    async def tokenize(self, http: Http, model: str, text: str) -> list[int] | None:
        """Token ids of ``text`` from the engine's own tokenizer; None when the engine has no such endpoint."""
        return None

    async def detokenize(self, http: Http, model: str, tokens: list[int]) -> str | None:
        return None


def answer_verdict(content: str, reasoning: str, where: str, field: str, detail: str) -> Verdict:
    """An answer counts when it has text in the content or, for reasoning models, in the reasoning field
    (which the row then names: the model may have run out of tokens while still thinking)."""
    if content.strip():
        return PASS, detail
    if reasoning.strip():
        return PASS, f"{detail}; answer in {field} only (a reasoning model: raise --max-tokens for content)"
    return FAIL, f"empty answer from {where}"


async def openai_stream_check(http: Http, model: str, max_tokens: int, prefix: str) -> Verdict:
    """A streamed chat completion over SSE must carry text (content, or reasoning for reasoning models)."""
    chunks, content, reasoning = 0, [], []
    usage: dict[str, Any] = {}
    async for _, ev in oa.stream(http, "/v1/chat/completions", oa.chat_payload(model, PROMPT, max_tokens, stream=True)):
        parts = oa.chunk_parts(ev)
        if parts is not None:
            chunks += 1
            content.append(parts[0])
            reasoning.append(parts[1])
        usage = oa.usage_of(ev) or usage
    verdict = answer_verdict("".join(content), "".join(reasoning), f"{prefix}stream", "reasoning_content",
                             f"{prefix}SSE: {chunks} chunks, {usage.get('completion_tokens', '?')} tokens")
    if verdict[0] == FAIL:
        return FAIL, f"{prefix}empty streamed answer"
    return verdict


async def openai_request(http: Http, api: str, model: str, prompt: str, params: RequestParams) -> RequestResult:
    """``/v1/chat/completions`` or ``/v1/completions`` streamed over SSE, timed and counted as vLLM's
    ``async_request_openai_chat_completions`` / ``async_request_openai_completions``
    (vllm/benchmarks/lib/endpoint_request_func.py): TTFT at the first chunk carrying ``choices``, ITL between
    such chunks, latency at the last one; a success needs one such chunk and no transport error. The kit's
    stricter findings on a success (no ``data: [DONE]``, an error event after tokens) go to ``warning``;
    an error event before any token is a failure."""
    extra: dict[str, Any] = dict(params.extra)
    if params.ignore_eos:
        extra.setdefault("ignore_eos", True)
    if params.temperature is not None:
        extra.setdefault("temperature", params.temperature)
    if params.top_p is not None:
        extra.setdefault("top_p", params.top_p)
    if api == "chat":
        path, body = "/v1/chat/completions", oa.chat_payload(model, prompt, params.max_tokens, stream=True, **extra)
    else:
        path, body = "/v1/completions", oa.completion_payload(model, prompt, params.max_tokens, stream=True, **extra)
    res = RequestResult()
    text: list[str] = []
    itl = res.itl
    chunk_text, usage_of = oa.chunk_text, oa.usage_of
    field_name = "text" if api != "chat" else None
    done, error_event, count_warning = False, "", ""
    st = time.perf_counter()
    res.start_time = st
    last = st
    try:
        async with asyncio.timeout(params.request_timeout):
            async for ts, events in http.stream(path, body, "sse", strict=False, headers=params.headers or None,
                                                batch=True):
                for ev in events:
                    if ev is None:
                        done = True
                        continue
                    choices = ev.get("choices")
                    if choices:
                        if res.chunks == 0:
                            res.ttft = ts - st
                        else:
                            itl.append(ts - last)
                        last = ts
                        res.chunks += 1
                        # fast path for the usual shapes; anything else (reasoning fields, odd types) via chunk_text
                        c = choices[0] if type(choices) is list else None
                        piece = None
                        if type(c) is dict:
                            if field_name is not None:
                                piece = c.get(field_name)
                            elif type(delta := c.get("delta")) is dict and len(delta) <= 2:
                                piece = delta.get("content")
                        text.append(piece if type(piece) is str else (chunk_text(ev) or ""))
                    elif "error" in ev:
                        err = ev["error"]
                        err = err.get("message", err) if isinstance(err, dict) else err
                        error_event = "stream error event: " + " ".join(str(err).split())[:200]
                        if res.chunks == 0:
                            raise ProtocolError(error_event)
                    # usage may ride on the last chunk with choices (llama.cpp) or on its own (vLLM)
                    if "usage" in ev and (usage := usage_of(ev)):
                        res.output_tokens, res.prompt_tokens, count_warning = usage_counts(usage)
    except TimeoutError:
        res.error = f"no complete answer within {params.request_timeout:.0f}s"
        return res
    except ProtocolError as exc:
        res.error = exc.reason
        return res
    if error_event:
        res.warning = f"{error_event} (after {res.chunks} chunks)"
    elif not done and res.chunks:
        res.warning = "stream ended without data: [DONE]"
    add_warning(res, count_warning)
    return finish(res, st, last, text)


def checked_count(value: Any, name: str) -> tuple[int | None, str]:
    """A token count the server reported, validated (metrics.token_count): (count, "") or, for a value that
    is not a whole number >= 0 ("3", 2.5, -5, true, 1e308, 10**30), (None, a warning naming the field): the
    request still counts as completed, its tokens as not reported (chunks counted instead, as vLLM does when
    a server sends no usage). A missing/null field is no warning."""
    n = token_count(value)
    if n is None and value is not None:
        shown = one_value(value)
        return None, f"{name} {shown} is not a token count (counted as not reported)"
    return n, ""


def usage_counts(usage: dict[str, Any]) -> tuple[int | None, int | None, str]:
    """OpenAI ``usage``: (completion_tokens, prompt_tokens, warning) through :func:`checked_count`."""
    out, bad_out = checked_count(usage.get("completion_tokens"), "usage.completion_tokens")
    prompt, bad_in = checked_count(usage.get("prompt_tokens"), "usage.prompt_tokens")
    return out, prompt, "; ".join(w for w in (bad_out, bad_in) if w)


def one_value(value: Any) -> str:
    """A server's value, short and on one line, for a warning."""
    text = repr(value) if isinstance(value, str) else str(value).lower() if isinstance(value, bool) else str(value)
    text = " ".join(text.split())
    return text if len(text) <= 24 else text[:21] + "..."


def add_warning(res: RequestResult, warning: str) -> None:
    if warning:
        res.warning = f"{res.warning}; {warning}" if res.warning else warning


def finish(res: RequestResult, st: float, last: float, text: list[str]) -> RequestResult:
    """Close a streamed request: a success needs at least one chunk with tokens."""
    if res.chunks == 0:
        res.error = "never received a chunk with tokens (cannot compute TTFT)"
        return res
    res.latency = last - st
    res.generated_text = "".join(text)
    res.success = True
    return res
