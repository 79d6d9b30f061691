"""Ollama: native API (``/api/*``, NDJSON, durations in ns) plus its OpenAI-compatible ``/v1``. GPU residency
from ``/api/ps`` (``size_vram``)."""

from __future__ import annotations

import asyncio
import re
import time
from typing import Any, ClassVar

import numpy as np

from ..errors import ProtocolError
from ..metrics import RequestResult, token_count
from ..protocols import Http
from ..protocols import ollama as ol
from ..server_metrics import ServerMetric
from ..verdicts import FAIL, PASS, WARN, Signature, Verdict
from .base import (
    PROMPT,
    STRUCTURED_PROMPT,
    Engine,
    RequestParams,
    Spec,
    Step,
    add_warning,
    answer_verdict,
    checked_count,
    finish,
    one_value,
    openai_request,
    openai_stream_check,
)

COUNTS = ("eval_count", "prompt_eval_count")
DURATIONS = ("eval_duration", "prompt_eval_duration", "load_duration", "total_duration")  # nanoseconds
STATS = COUNTS + DURATIONS
MAX_DURATION_NS = 10**15  # 11.6 days: a longer "duration" (1e308) is no engine's measurement


class Ollama(Engine):
    spec = Spec("ollama", "Ollama", default_port=11434, deployed=True, compose_service="ollama",
                env_port="OLLAMA_PORT", env_model="OLLAMA_MODEL", env_model_path="OLLAMA_GGUF",
                ansible_port="inference_stack_ollama_port", ansible_model="inference_stack_ollama_model")
    probe_path = "/"
    apis = ("ollama", "chat", "completions")
    default_api = "ollama"
    auth_probe = ("POST", "/api/generate")  # Ollama has no keys itself: a proxy in front must refuse this
    structured_output = "format"
    known_features = True
    signatures: ClassVar[tuple[Signature, ...]] = (
        Signature("Ollama found no usable GPU (runs on the CPU)",
                  re.compile(r"no compatible GPUs were discovered|unable to load cuda|"
                             r"inference compute.*library=cpu", re.I),
                  "give the container the GPU (NVIDIA runtime, gpus: all) and check the driver with nvidia-smi"),
    )

    # Ollama has no Prometheus endpoint (no /metrics): during a benchmark smoke-bench reads /api/ps instead, the
    # models loaded and their memory on the GPU (size_vram) and in all (size), beside the GPU memory samples
    server_metrics = (
        ServerMetric("models_loaded", "models loaded (/api/ps)", series=("ollama:models_loaded",)),
        ServerMetric("size_vram", "loaded models in GPU memory (/api/ps size_vram)", series=("ollama:size_vram",),
                     scale=1 / 2**20, unit="MiB"),
        ServerMetric("size", "loaded models' size (/api/ps size)", series=("ollama:size",), scale=1 / 2**20,
                     unit="MiB"),
    )
    server_metrics_path = "/api/ps"

    def server_metrics_source(self) -> str:
        return "GET /api/ps (Ollama has no metrics endpoint: models loaded, size_vram; and the GPU samples)"

    async def sample_server(self, http: Http) -> dict[str, float]:
        """``/api/ps``: how many models are loaded, and their bytes in GPU memory and in all (summed)."""
        _, body, _ = await http.request("GET", "/api/ps")
        models = body.get("models") if isinstance(body, dict) else None
        if not isinstance(models, list):
            raise ProtocolError("GET /api/ps: answer has no models list")
        rows = [m for m in models if isinstance(m, dict)]

        def total(key: str) -> float:
            return float(sum(v for m in rows if isinstance(v := m.get(key), int | float) and not isinstance(v, bool)))

        return {"ollama:models_loaded": float(len(rows)), "ollama:size_vram": total("size_vram"),
                "ollama:size": total("size")}

    def recognise(self, status: int, text: str) -> bool:
        return status == 200 and "Ollama is running" in text

    async def liveness(self, http: Http) -> Verdict:
        _, text, _ = await http.request("GET", "/", expect="text")
        if "Ollama is running" not in text:
            return FAIL, f"GET / answered {text.strip()[:60]!r}, not 'Ollama is running'"
        _, ver, _ = await http.request("GET", "/api/version")
        return PASS, f"Ollama {ver.get('version', '?') if isinstance(ver, dict) else '?'}"

    async def models(self, http: Http) -> list[str]:
        return await ol.tags(http)

    def same_model(self, wanted: str, served: str) -> bool:
        return ol.same_model(wanted, served)

    def missing_model_hint(self, wanted: str) -> str:
        return (f"it is not pulled: run `ollama pull {wanted}` on the Ollama host (compose: `docker compose exec "
                f"ollama ollama pull {wanted}`), or set OLLAMA_MODEL={wanted} in the compose .env "
                f"(Ansible: inference_stack_ollama_model) and deploy again: the kit pulls it")

    async def preferred_model(self, http: Http, served: list[str]) -> str | None:
        """A model already loaded (``/api/ps``), so that a health check never loads (and evicts for) an
        arbitrary model of ``/api/tags``."""
        try:
            loaded = await ol.ps(http)
        except ProtocolError:
            return None
        for entry in loaded:
            name = entry.get("name") or entry.get("model")
            match = next((s for s in served if isinstance(name, str) and ol.same_model(name, s)), None)
            if match:
                return match
        return None

    async def version(self, http: Http) -> str | None:
        v = await ol.version(http)
        return f"Ollama {v}" if v else None

    def auth_body(self, model: str) -> dict[str, Any]:
        return ol.generate_payload(model, "hi", 1, stream=False)

    async def structured_answer(self, http: Http, model: str, schema: dict[str, Any], max_tokens: int) -> str:
        """Ollama's ``format`` with a JSON schema on /api/chat."""
        body = await ol.chat(http, model, STRUCTURED_PROMPT, max_tokens, format=schema)
        return ol.message_parts(body)[0]

    async def embed(self, http: Http, model: str) -> int:
        _, body, _ = await http.request("POST", "/api/embed", json_body={"model": model, "input": "hello"})
        vecs = body.get("embeddings") if isinstance(body, dict) else None
        vec = vecs[0] if isinstance(vecs, list) and vecs else None
        if not isinstance(vec, list) or not vec:
            raise ProtocolError("POST /api/embed: answer has no embeddings[0] vector")
        return len(vec)

    def function_steps(self, http: Http, model: str, max_tokens: int) -> list[Step]:
        async def native() -> Verdict:
            body = await ol.chat(http, model, PROMPT, max_tokens)
            content, thinking = ol.message_parts(body)
            return answer_verdict(content, thinking, "/api/chat", "message.thinking",
                                  f"/api/chat: {body.get('eval_count', '?')} tokens")

        async def native_stream() -> Verdict:
            content, thinking = [], []
            final: dict[str, Any] = {}
            body = ol.chat_payload(model, PROMPT, max_tokens, stream=True)
            async for _, ev in http.stream("/api/chat", body, "ndjson"):
                c, t = ol.message_parts(ev)
                content.append(c)
                thinking.append(t)
                final = ev if isinstance(ev, dict) else final
            verdict = answer_verdict("".join(content), "".join(thinking), "/api/chat", "message.thinking",
                                     f"/api/chat NDJSON: {len(content)} lines, "
                                     f"eval_count {final.get('eval_count', '?')}")
            if verdict[0] == FAIL:
                return FAIL, "empty streamed answer from /api/chat"
            return verdict

        return [("completion", native), ("stream", native_stream),
                ("openai_v1", lambda: openai_stream_check(http, model, max_tokens, "/v1 "))]

    async def gpu_residency(self, http: Http, model: str, *, expect_gpu: bool | None) -> Verdict | None:
        loaded = await ol.ps(http)
        entry = next((m for m in loaded if ol.same_model(str(m.get("name")), model)), None)
        if entry is None:
            return FAIL, f"{model} is not loaded (/api/ps) right after a request"
        size, vram = _int(entry.get("size")), _int(entry.get("size_vram"))
        if vram > 0 and size > vram:
            # split across CPU and GPU: what `ollama ps` shows as "48%/52% CPU/GPU"
            cpu = round(100 * (size - vram) / size)
            split = f"{cpu}%/{100 - cpu}% CPU/GPU"
            msg = (f"partial GPU offload: {split} ({(size - vram) / 2**20:.0f} MiB of the model in system RAM); "
                   "the model does not fit the free VRAM (smaller quantisation or context, or free the GPU)")
            if expect_gpu is False:
                return PASS, f"{split}, on a host configured without GPU"
            return (FAIL if expect_gpu else WARN), msg
        if vram > 0:
            share = f"{100 * vram / size:.0f}%" if size else "?"
            return PASS, f"{vram / 2**20:.0f} MiB in VRAM ({share} of the model)"
        if expect_gpu is False:
            return PASS, "in system RAM (size_vram 0), as configured for a host without GPU"
        status = FAIL if expect_gpu else WARN
        return status, "model runs on the CPU (size_vram 0): GPU not visible to Ollama (check the NVIDIA runtime)"

    async def send(self, http: Http, api: str, model: str, prompt: str, params: RequestParams) -> RequestResult:
        if api != "ollama":
            return await openai_request(http, api, model, prompt, params)
        return await generate_request(http, model, prompt, params)

    def summarise(self, ok: list[RequestResult]) -> dict[str, float]:
        """Ollama's own timings beside the client's: means over the successful requests that reported each
        figure (ms and tokens/s); a figure no request reported is left out, never taken as 0."""
        stats = [r.engine_stats for r in ok if r.engine_stats]
        if not stats:
            return {}

        def mean(key: str, scale: float = 1.0) -> float | None:
            values = [s[key] for s in stats if isinstance(s.get(key), int | float)]
            return float(np.mean(values)) / scale if values else None

        eval_rates = [s["eval_count"] / (s["eval_duration"] / 1e9) for s in stats
                      if isinstance(s.get("eval_count"), int | float) and s.get("eval_duration")]
        out = {
            "mean_eval_count": mean("eval_count"),
            "mean_eval_duration_ms": mean("eval_duration", 1e6),
            "mean_prompt_eval_duration_ms": mean("prompt_eval_duration", 1e6),
            "mean_load_duration_ms": mean("load_duration", 1e6),
            "mean_eval_rate_tok_s": float(np.mean(eval_rates)) if eval_rates else None,
        }
        return {k: v for k, v in out.items() if v is not None}


def final_stats(ev: dict[str, Any]) -> tuple[dict[str, float], str]:
    """The figures of a final ``done`` line that are what Ollama documents (counts: whole numbers >= 0;
    durations: numbers of ns >= 0 and below 11.6 days); anything else is left out with a warning naming it."""
    stats: dict[str, float] = {}
    bad: list[str] = []
    for key in COUNTS:
        n, why = checked_count(ev.get(key), key)
        if n is not None:
            stats[key] = n
        elif why:
            bad.append(why)
    for key in DURATIONS:
        v = ev.get(key)
        if isinstance(v, int | float) and not isinstance(v, bool) and 0 <= v <= MAX_DURATION_NS:
            stats[key] = v
        elif v is not None:
            bad.append(f"{key} {one_value(v)} is not a duration in ns (left out)")
    return stats, "; ".join(bad)


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


async def generate_request(http: Http, model: str, prompt: str, params: RequestParams) -> RequestResult:
    """``/api/generate`` streamed as NDJSON: every line before ``done`` carries a token. Counted as
    ``vllm bench serve`` counts (a success needs one token and no transport error); a stream that ends
    without its ``done`` line, or an error line after tokens, is a success with a ``warning``. Sampling
    options (temperature, top_p) go to ``options``; ``--extra-body`` keys to the top level of the body."""
    res = RequestResult()
    text: list[str] = []
    itl = res.itl
    body: dict[str, Any] = ol.generate_payload(model, prompt, params.max_tokens, stream=True)
    options = body.setdefault("options", {})
    if params.temperature is not None:
        options["temperature"] = params.temperature
    if params.top_p is not None:
        options["top_p"] = params.top_p
    extra = dict(params.extra)
    if isinstance(extra.get("options"), dict):  # merged, so that num_predict (--output-len) stays
        options.update(extra.pop("options"))
    body.update(extra)
    done, error_line, count_warning = False, "", ""
    st = time.perf_counter()
    res.start_time = st
    last = st
    try:
        async with asyncio.timeout(params.request_timeout):
            async for ts, ev in http.stream("/api/generate", body, "ndjson", strict=False,
                                            headers=params.headers or None):
                if "error" in ev:
                    error_line = "stream error: " + " ".join(str(ev["error"]).split())[:200]
                    if res.chunks == 0:
                        raise ProtocolError(error_line)
                    continue
                if ev.get("done"):
                    done = True
                    res.engine_stats, count_warning = final_stats(ev)
                    res.output_tokens = token_count(res.engine_stats.get("eval_count"))
                    res.prompt_tokens = token_count(res.engine_stats.get("prompt_eval_count"))
                    continue
                if res.chunks == 0:
                    res.ttft = ts - st
                else:
                    itl.append(ts - last)
                last = ts
                res.chunks += 1
                text.append(str(ev.get("response", "")))
    except TimeoutError:
        res.error = f"no complete answer within {params.request_timeout:.0f}s"
        return res
    except ProtocolError as exc:
        res.error = exc.reason
        return res
    if error_line:
        res.warning = f"{error_line} (after {res.chunks} lines)"
    elif not done and res.chunks:
        res.warning = 'stream ended without a line with "done": true'
    add_warning(res, count_warning)
    return finish(res, st, last, text)


ENGINE = Ollama()
