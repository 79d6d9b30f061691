"""SGLang (``python -m sglang.launch_server``): OpenAI API plus /health, /get_model_info and ``sglang:`` metrics
(with ``--enable-metrics``). Runs as the optional ``sglang`` compose profile; the Ansible roles do not deploy it."""

from __future__ import annotations

from ..protocols import Http
from .base import Engine, Spec


class SGLang(Engine):
    spec = Spec("sglang", "SGLang", default_port=30000, compose_service="sglang", env_port="SGLANG_PORT",
                env_model="SGLANG_SERVED_MODEL_NAME", env_model_path="SGLANG_MODEL")
    probe_path = "/get_model_info"
    health_path = "/health"
    metrics_prefix = "sglang:"
    metrics_optional = True  # only with --enable-metrics
    known_features = True

    def recognise(self, status: int, text: str) -> bool:
        return status == 200 and '"model_path"' in text

    async def version(self, http: Http) -> str | None:
        _, body, _ = await http.request("GET", "/get_server_info")
        v = body.get("version") if isinstance(body, dict) else None
        return f"SGLang {v}" if isinstance(v, str) else None


ENGINE = SGLang()
