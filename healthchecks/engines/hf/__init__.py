"""Hugging Face Inference Providers: the router at ``https://router.huggingface.co/v1`` (OpenAI-compatible chat).

What the router adds to a plain OpenAI-compatible server, and how the kit uses it:

- **Provider choice** is a suffix on the model: ``org/model:together`` (one provider), ``:fastest``,
  ``:cheapest``, ``:preferred`` (the router's policies); no suffix (``auto``) is the router's default,
  ``:fastest``. ``--providers auto,together,novita`` expands one ``hf`` endpoint into one per choice (label
  ``hf/together``, ``Endpoint.meta["provider"]``), so smoke-bench shows them side by side.
- **Who answered**: the ``x-inference-provider`` response header -> ``RequestResult.served_by``.
- **Failover** (``--failover``): each request tries the ``--providers`` choices in order and moves on after a
  timeout, a connection error, 429, 402, 5xx or a model the provider does not serve;
  ``RequestResult.failovers`` counts the moves. **Retries** (``--retries N``, default 0): the same choice again
  after a transient failure (timeout, connection, 429, 5xx) with exponential backoff and jitter;
  ``Retry-After`` is honoured up to the request timeout. Nothing else retries (httpx does not), so a latency
  is never inflated by a hidden retry. TTFT and E2EL run from the first attempt: a failover's cost is
  part of what the user sees.
- **Errors** become one line: the class (invalid token, missing permission, gated model, credits, rate limit,
  model not supported, upstream 5xx, timeout), the router's own words, the fix, and the ``x-request-id``.
- **Token**: ``--hf-token-file``, else huggingface_hub's order (``HF_TOKEN``, ``HUGGING_FACE_HUB_TOKEN``, the
  file at ``HF_TOKEN_PATH``, else ``$HF_HOME/token``). It is only ever sent in the Authorization header;
  every reason is scrubbed of it; a token file readable by others is a warning.
- **Readiness** from ``GET /v1/models``: a model counts as served when at least one of its providers is
  ``live``; the ``providers`` row lists each provider with its status and HF's own probe figures.
"""

from __future__ import annotations

from .engine import ENGINE, ROUTER_URL, HuggingFace

__all__ = ["ENGINE", "ROUTER_URL", "HuggingFace"]
