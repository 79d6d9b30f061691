"""The router's failures, one line each: the class (invalid token, missing permission, gated model, credits, rate
limit, model not supported, upstream 5xx, timeout...), the router's own words, the fix and the ``x-request-id``;
which ones are transient (retried) and which move on to the next provider."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx

from ...errors import ProtocolError
from ...protocols import describe, one_line, parse_json
from ...protocols.retry import retry_after
from .choice import AUTO, POLICIES, split_choice

# kind -> (what it is, the fix). ``{model}`` and ``{provider}`` are filled in.
CLASSES: dict[str, tuple[str, str]] = {
    "auth": ("invalid token",
             "create a token at https://huggingface.co/settings/tokens and point --hf-token-file (or HF_TOKEN) at it"),
    "permission": ("token lacks the Inference Providers permission",
                   "edit the fine-grained token at https://huggingface.co/settings/tokens and tick "
                   "'Make calls to Inference Providers'"),
    "gated": ("gated model",
              "accept the model's conditions at https://huggingface.co/{model} with the token's account"),
    "forbidden": ("forbidden", "check the token's account and organisation permissions"),
    "credits": ("credits exhausted",
                "add credits or subscribe at https://huggingface.co/settings/billing, or fail over to a "
                "provider billed elsewhere"),
    "rate_limited": ("rate limited",
                     "lower --concurrency/--request-rate, allow --retries (Retry-After is honoured) or add "
                     "providers with --failover"),
    "model_not_supported": ("model not supported by {provider}",
                            "enable a provider that serves it at https://huggingface.co/settings/inference-providers"
                            " or choose one listed by GET /v1/models"),
    "not_found": ("not found", "the endpoint must be the router's /v1 base (hf=https://router.huggingface.co/v1)"),
    "bad_request": ("request refused", "check the model name and request parameters"),
    "upstream": ("provider failed upstream",
                 "usually transient on the provider's side: allow --retries or add providers with --failover"),
    "timeout": ("timeout", "raise --timeout, or fail over to another provider (--providers ... --failover)"),
    "connection": ("connection failed", "check the network path (proxy, DNS, TLS) to the router"),
    "broken": ("broken answer", "transient on the provider's side: allow --retries or add providers with --failover"),
}
TRANSIENT = frozenset({"timeout", "connection", "rate_limited", "upstream", "broken"})
MOVE_ON = TRANSIENT | {"credits", "model_not_supported"}


@dataclass(frozen=True)
class Failure:
    kind: str
    message: str  # the server's own words (or the transport error), one line
    status: int | None = None
    request_id: str | None = None
    provider: str | None = None  # x-inference-provider of the failed answer, when the router named one
    choice: str = AUTO
    retry_after: float | None = None

    @property
    def transient(self) -> bool:
        return self.kind in TRANSIENT

    @property
    def moves_on(self) -> bool:
        return self.kind in MOVE_ON

    def title(self) -> str:
        what, _ = CLASSES[self.kind]
        target = self.provider or (self.choice if self.choice not in (AUTO, *POLICIES) else "any enabled provider")
        what = what.format(provider=target, model="")
        return f"{what} ({self.status})" if self.status else what

    def fix(self, model: str) -> str:
        return CLASSES[self.kind][1].format(model=split_choice(model)[0], provider=self.provider or self.choice)

    def reason(self, model: str) -> str:
        """One line with the request id: for a check row."""
        rid = self.request_id or "none (no answer)"
        return f"{self.title()}: {self.message}; fix: {self.fix(model)}; x-request-id {rid}"

    def key(self, model: str) -> str:
        """One line without the request id: the benchmark's error class (a Counter key)."""
        where = f" [{self.provider or self.choice}]"
        return f"{self.title()}{where}: {self.fix(model)}"


def _server_message(body: str, headers: httpx.Headers) -> tuple[str, str, str]:
    """(message, type, code) from either envelope: ``{"error": {"message", "type", "code"}}`` or
    ``{"error": "..."}`` (also a list of strings, and huggingface_hub's X-Error-Message header)."""
    msg, typ, code = "", "", str(headers.get("x-error-code") or "")
    try:
        obj: Any = parse_json(body, "error")
    except ProtocolError:
        obj = None
    if isinstance(obj, dict):
        err = obj.get("error", obj.get("message", obj.get("detail")))
        if isinstance(err, dict):
            msg = str(err.get("message") or "")
            typ = str(err.get("type") or "")
            code = str(err.get("code") or code)
        elif isinstance(err, list):
            msg = "; ".join(str(e) for e in err)
        elif err is not None:
            msg = str(err)
    elif body.strip():
        low = body.lstrip()[:200].lower()
        msg = "an HTML page from a proxy or gateway" if low.startswith(("<!doctype", "<html")) else body
    msg = msg or str(headers.get("x-error-message") or "") or "(empty body)"
    return one_line(msg, 180), typ, code


def classify(status: int, body: str, headers: httpx.Headers, choice: str = AUTO) -> Failure:
    """An HTTP error answer of the router -> a :class:`Failure`."""
    msg, typ, code = _server_message(body, headers)
    low = f"{msg} {typ} {code}".lower()
    if status == 401:
        kind = "auth"
    elif status == 402:
        kind = "credits"
    elif status == 403:
        if "gated" in low or "restricted" in low or "authorized list" in low or "ask for access" in low:
            kind = "gated"
        elif "permission" in low:
            kind = "permission"
        else:
            kind = "forbidden"
    elif status == 429:
        kind = "rate_limited"
    elif status >= 500:
        kind = "upstream"
    elif code == "model_not_supported" or "not supported" in low:
        kind = "model_not_supported"
    elif status == 404:
        kind = "not_found"
    else:
        kind = "bad_request"
    return Failure(kind, msg, status, headers.get("x-request-id"), headers.get("x-inference-provider"), choice,
                   retry_after(headers))


def _transport(exc: BaseException, url: str, choice: str) -> Failure:
    if isinstance(exc, TimeoutError | httpx.TimeoutException):
        what = describe(exc, url) if isinstance(exc, httpx.TimeoutException) else "no complete answer in time"
        return Failure("timeout", what, choice=choice)
    if isinstance(exc, httpx.RemoteProtocolError | httpx.ReadError):
        return Failure("broken", describe(exc, url), choice=choice)
    return Failure("connection", describe(exc, url) if isinstance(exc, httpx.HTTPError) else str(exc), choice=choice)


class _Failed(Exception):
    def __init__(self, failure: Failure) -> None:
        super().__init__(failure.kind)
        self.failure = failure


