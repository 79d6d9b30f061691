"""llama.cpp's ``llama-server``: /health (503 while loading), /props, ``llamacpp:`` metrics when started with
``--metrics``, /tokenize and /detokenize."""

from __future__ import annotations

import re
from typing import ClassVar

from ..protocols import Http
from ..server_metrics import ServerMetric
from ..verdicts import Signature
from .base import Engine, Spec


class LlamaCpp(Engine):
    spec = Spec("llamacpp", "llama.cpp (llama-server)", default_port=8080, deployed=True,
                compose_service="llamacpp", env_port="LLAMACPP_PORT", env_model="LLAMACPP_MODEL_ALIAS",
                env_model_path="LLAMACPP_MODEL", env_api_key_file="LLAMACPP_API_KEY_FILE",
                ansible_port="inference_stack_llamacpp_port",
                ansible_model="inference_stack_llamacpp_model_alias")
    probe_path = "/props"
    health_path = "/health"
    loading_status = 503
    metrics_prefix = "llamacpp:"
    metrics_optional = True  # only with --metrics
    # llama-server's /metrics (with --metrics), names as tools/server/server-task.cpp of the built release writes
    # them (counters: prompt_tokens_total "excluding cached tokens", prompt_tokens_cached_total "reused from
    # the cache"; gauges: requests_processing, requests_deferred). This build exposes no KV-cache usage gauge.
    server_metrics = (
        ServerMetric("running", "requests running", series=("llamacpp:requests_processing",)),
        ServerMetric("waiting", "requests waiting", series=("llamacpp:requests_deferred",)),
        ServerMetric("prefix_cache_hits", "prompt-cache hit rate (prompt tokens)", unit="%",
                     hits=("llamacpp:prompt_tokens_cached_total",),
                     queries=("llamacpp:prompt_tokens_total", "llamacpp:prompt_tokens_cached_total")),
    )
    known_features = True
    signatures: ClassVar[tuple[Signature, ...]] = (
        Signature("llama.cpp fell back to the CPU",
                  re.compile(r"no usable GPU found|ggml_cuda_init: failed to initialize CUDA|"
                             r"warning: no usable GPU|not compiled with GPU offload support", re.I),
                  "the server sees no CUDA device: use a CUDA image (server-cuda) with the NVIDIA runtime "
                  "(gpus: all) and set LLAMACPP_GPU_LAYERS"),
    )

    def server_metrics_missing(self, reason: str) -> str:
        return (f"{self.server_metrics_source()}: no answer ({reason}); llama-server serves it only when started "
                "with --metrics")

    def recognise(self, status: int, text: str) -> bool:
        return status == 200 and ("default_generation_settings" in text or "build_info" in text)

    async def version(self, http: Http) -> str | None:
        _, body, _ = await http.request("GET", "/props")
        build = body.get("build_info") if isinstance(body, dict) else None
        return f"llama.cpp {build}" if isinstance(build, str) and build else None

    async def tokenize(self, http: Http, model: str, text: str) -> list[int] | None:
        _, body, _ = await http.request("POST", "/tokenize", json_body={"content": text, "add_special": False})
        tokens = body.get("tokens") if isinstance(body, dict) else None
        if not isinstance(tokens, list):
            return None
        # with_pieces answers objects; plain answers ints
        return [int(t["id"]) if isinstance(t, dict) else int(t) for t in tokens]

    async def detokenize(self, http: Http, model: str, tokens: list[int]) -> str | None:
        _, body, _ = await http.request("POST", "/detokenize", json_body={"tokens": tokens})
        text = body.get("content") if isinstance(body, dict) else None
        return text if isinstance(text, str) else None


ENGINE = LlamaCpp()
