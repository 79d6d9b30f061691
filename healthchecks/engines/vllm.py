"""vLLM (``vllm serve``): /health, /version, Prometheus ``vllm:`` series, /tokenize and /detokenize."""

from __future__ import annotations

import re
from typing import ClassVar

from ..protocols import Http
from ..verdicts import Signature
from .base import Engine, Spec


class Vllm(Engine):
    spec = Spec("vllm", "vLLM", default_port=8000, deployed=True, compose_service="vllm",
                env_port="VLLM_PORT", env_model="VLLM_SERVED_MODEL_NAME", env_model_path="VLLM_MODEL",
                env_api_key_file="VLLM_API_KEY_FILE",
                ansible_port="inference_stack_vllm_port", ansible_model="inference_stack_vllm_served_model_name")
    probe_path = "/version"
    health_path = "/health"
    metrics_prefix = "vllm:"
    kv_cache_series = ("vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc")
    known_features = True
    signatures: ClassVar[tuple[Signature, ...]] = (
        Signature("vLLM fell back to the CPU platform",
                  re.compile(r"Automatically detected platform cpu|No platform detected, vLLM is running on "
                             r"UnspecifiedPlatform|Failed to infer device type", re.I),
                  "the container sees no GPU: run it with the NVIDIA runtime (gpus: all) and check "
                  "`docker run --gpus all <image> nvidia-smi`; CPU-only hosts use the CPU overlay"),
    )

    def recognise(self, status: int, text: str) -> bool:
        return status == 200 and '"version"' in text

    async def version(self, http: Http) -> str | None:
        _, body, _ = await http.request("GET", "/version")
        v = body.get("version") if isinstance(body, dict) else None
        return f"vLLM {v}" if isinstance(v, str) else None

    async def tokenize(self, http: Http, model: str, text: str) -> list[int] | None:
        _, body, _ = await http.request("POST", "/tokenize",
                                        json_body={"model": model, "prompt": text, "add_special_tokens": False})
        tokens = body.get("tokens") if isinstance(body, dict) else None
        return [int(t) for t in tokens] if isinstance(tokens, list) else None

    async def detokenize(self, http: Http, model: str, tokens: list[int]) -> str | None:
        _, body, _ = await http.request("POST", "/detokenize", json_body={"model": model, "tokens": tokens})
        text = body.get("prompt") if isinstance(body, dict) else None
        return text if isinstance(text, str) else None


ENGINE = Vllm()
