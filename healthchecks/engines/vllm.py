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
    # The Hub refusing vLLM's model download: the lines of the vllm-model-check compose service (compose.yaml,
    # which runs before vLLM) and of huggingface_hub as vLLM logs them (utils/_http.py hf_raise_for_status:
    # "Cannot access gated repo for url ...", "Repository Not Found for url: ...", "Revision Not Found for url:
    # ..." followed by the Hub's X-Error-Message; file_download.py when the Hub cannot be reached). Each names
    # the kit setting that fixes it.
    signatures: ClassVar[tuple[Signature, ...]] = (
        Signature("gated model and no Hugging Face token",
                  re.compile(r"is a gated repository and no Hugging Face token was given|"
                             r"You must have access to it and be authenticated to access it", re.I),
                  "the model is gated on the Hub: put a token that was granted access to it in vault_hf_token "
                  "(the hf_secret role writes the hf_token secret; compose: the file HF_TOKEN_FILE names)"),
        Signature("Hugging Face token not granted access to the gated model",
                  re.compile(r"the token in the hf_token secret was not granted access|"
                             r"you are not in the authorized list", re.I),
                  "request access on the model's Hub page with the account of the token in vault_hf_token, or put "
                  "a token of an account that was granted access there"),
        Signature("Hugging Face token rejected by the Hub",
                  re.compile(r"rejected the token in the hf_token secret|"
                             r"Invalid credentials in Authorization header|Invalid user token", re.I),
                  "the token in vault_hf_token is invalid or revoked: put a valid token there (with a lab Hub "
                  "mirror, the token it accepts; inference_stack_hf_endpoint names the mirror)"),
        Signature("model not on the Hub",
                  re.compile(r"vllm-model-check: .* was not found on |vllm-model-check: .*: revision .* not found on|"
                             r"Repository Not Found for url|Revision Not Found for url|"
                             r"If you are trying to access a private or gated repo, make sure you are authenticated",
                             re.I),
                  "check inference_stack_vllm_model (a Hub repository id, or a path under /models) and "
                  "inference_stack_vllm_model_revision; a private repository needs a token that can read it in "
                  "vault_hf_token"),
        Signature("Hugging Face Hub unreachable",
                  re.compile(r"vllm-model-check: cannot reach the Hub at|"
                             r"An error happened while trying to locate the file on the Hub", re.I),
                  "check inference_stack_hf_endpoint (the Hub or the lab's Hub mirror) and the proxy "
                  "(inference_stack_https_proxy, a mirror inside the lab in inference_stack_no_proxy); an "
                  "air-gapped lab sets inference_stack_airgapped: true and serves the model from "
                  "inference_stack_models_dir"),
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
