"""The ``hf`` engine: Hugging Face's Inference Providers router as the kit's checks and benchmark see it (command
line, readiness from ``GET /v1/models``, completion rows, benchmark requests). See the package's docstring."""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import httpx

from ...errors import ConfigError, ProtocolError
from ...metrics import RequestResult
from ...protocols import Http, parse_json
from ...protocols import openai as oa
from ...verdicts import FAIL, PASS, WARN, Verdict
from ..base import PROMPT, Engine, RequestParams, Spec, Step, add_warning, usage_counts
from .choice import AUTO, POLICIES, check_choice, parse_providers, split_choice, with_choice
from .failures import _transport, classify
from .router import call
from .token import TokenSource, file_source, resolve_token

if TYPE_CHECKING:
    from ...endpoints.url import Endpoint

ROUTER_URL = "https://router.huggingface.co/v1"


@dataclass(frozen=True)
class Settings:
    """The run's hf flags (the same for every hf endpoint of one run)."""

    providers: tuple[str, ...] = (AUTO,)
    failover: bool = False
    retries: int = 0
    token: TokenSource = field(default_factory=TokenSource)




class HuggingFace(Engine):
    """Hugging Face's Inference Providers router (``hf=URL``; the URL is the router's ``/v1`` base)."""

    spec = Spec("hf", "Hugging Face Inference Providers", default_url=ROUTER_URL)
    apis = ("chat",)  # the router's OpenAI-compatible API is chat completions only
    default_api = "chat"
    auth_probe = ("POST", "/v1/chat/completions")  # GET /v1/models is public on the router
    structured_output = None  # depends on the provider (supports_structured_output); not checked here

    def __init__(self) -> None:
        self.settings = Settings()

    # -- command line --------------------------------------------------------------------------------------
    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        g = parser.add_argument_group("Hugging Face Inference Providers (hf=URL endpoints)")
        g.add_argument("--providers", metavar="LIST",
                       help="provider choices, e.g. auto,together,novita: one endpoint each (auto: the router's "
                            "default; fastest/cheapest/preferred: its policies; a name: that provider)")
        g.add_argument("--failover", action="store_true",
                       help="one endpoint instead: each request tries the --providers in order, moving on after "
                            "a timeout, connection error, 429, 402, 5xx or an unsupported model")
        g.add_argument("--retries", type=int, default=0, metavar="N",
                       help="retries per provider after a timeout, connection error, 429 or 5xx, with "
                            "exponential backoff and jitter; Retry-After honoured (default 0)")
        g.add_argument("--hf-token-file", metavar="FILE",
                       help="file holding the Hugging Face token (default: HF_TOKEN, HF_TOKEN_PATH, "
                            "then huggingface_hub's stored token)")

    def configure(self, args: argparse.Namespace, endpoints: list[Endpoint]) -> list[Endpoint]:
        providers_arg = getattr(args, "providers", None)
        failover = bool(getattr(args, "failover", False))
        retries = getattr(args, "retries", 0) or 0
        token_file = getattr(args, "hf_token_file", None)
        if retries < 0 or retries > 10:
            raise ConfigError(f"--retries must be between 0 and 10, not {retries}")
        mine = [e for e in endpoints if e.engine == self.name]
        if not mine:
            used = [f for f, v in (("--providers", providers_arg), ("--failover", failover),
                                   ("--retries", retries), ("--hf-token-file", token_file)) if v]
            if used:
                raise ConfigError(f"{', '.join(used)} apply to hf endpoints only: add hf=URL "
                                  f"(the router's /v1 base, e.g. hf={ROUTER_URL})")
            self.settings = Settings()
            return endpoints
        providers = parse_providers(providers_arg) if providers_arg else (AUTO,)
        if failover and len(providers) < 2:
            raise ConfigError("--failover needs at least two --providers to move between (e.g. together,novita)")
        global_key = _bare_api_key_files(getattr(args, "api_key_file", None))
        # a key file given for hf endpoints alone (--api-key-file hf=FILE) is the token; a bare --api-key-file
        # (every endpoint: a lab's key) is never sent to the cloud; --hf-token-file wins over both
        own = sorted({e.api_key_file for e in mine if e.api_key_file and e.api_key_file not in global_key})
        if own and not token_file:
            token = file_source(own[0], "--api-key-file hf=FILE")
        else:
            token = resolve_token(token_file, os.environ)
        self.settings = Settings(providers=providers, failover=failover, retries=retries, token=token)
        out: list[Endpoint] = []
        several = len(mine) > 1
        for ep in endpoints:
            if ep.engine != self.name:
                out.append(ep)
                continue
            keyed = ep if own and not token_file and ep.api_key_file in own \
                else replace(ep, api_key_file=token.file, api_key_env=token.env)
            out.extend(self._expand(keyed, providers, token, failover=failover, several=several))
        return out

    def _expand(self, ep: Endpoint, providers: tuple[str, ...], token: TokenSource, *, failover: bool,
                several: bool) -> list[Endpoint]:
        keyed = ep
        meta = dict(ep.meta)
        if token.warning:
            meta["token_warning"] = token.warning
        where = f"@{ep.host}:{ep.port}" if several else ""
        model = ep.model
        if model is not None and split_choice(model)[1] != AUTO:
            if providers != (AUTO,):
                raise ConfigError(f"--model {model} already names a provider choice; drop the suffix or --providers")
            choice = split_choice(model)[1]
            check_choice(choice)
            return [replace(keyed, name=ep.name or f"hf{where}/{choice}", meta={**meta, "provider": choice})]
        if providers == (AUTO,):
            return [replace(keyed, name=ep.name or f"hf{where}/auto", meta={**meta, "provider": AUTO})]
        if model is None:
            raise ConfigError("--providers needs --model (the router serves many models; e.g. --model org/name)")
        if failover:
            chain = ",".join(providers)
            return [replace(keyed, name=ep.name or f"hf{where}/{'>'.join(providers)}",
                            meta={**meta, "provider": chain, "failover": chain})]
        return [replace(keyed, model=with_choice(model, p), name=f"{ep.name or 'hf' + where}/{p}",
                        meta={**meta, "provider": p}) for p in providers]

    def notes(self) -> list[str]:
        """One-line warnings about this run's settings, for the CLIs to print once (hook proposed to the lead;
        healthcheck also shows them as a ``token`` row, smoke-bench's JSON as ``token_warning``)."""
        return [self.settings.token.warning] if self.settings.token.warning else []

    def chain_for(self, model: str) -> tuple[str, tuple[str, ...]]:
        """(base model, provider choices to try in order) for a model as the endpoint names it."""
        base, choice = split_choice(model)
        if choice == AUTO and self.settings.failover:
            return base, self.settings.providers
        return base, (choice,)

    # -- recognise: never by probing (the router is named, hf=URL) ------------------------------------------
    def recognise(self, status: int, text: str) -> bool:
        return False

    # -- liveness and readiness -------------------------------------------------------------------------------
    async def _get(self, http: Http, path: str) -> tuple[Any, str | None]:
        url = http.base + path
        try:
            r = await http.client.get(url, headers=http.headers())
        except httpx.HTTPError as exc:
            raise ProtocolError(self._scrub(http, _transport(exc, url, AUTO).reason(""))) from None
        if r.status_code >= 400:
            f = classify(r.status_code, r.text, r.headers)
            raise ProtocolError(self._scrub(http, f.reason("")), status=r.status_code)
        return parse_json(r.text, f"GET {path}"), r.headers.get("x-request-id")

    async def catalogue(self, http: Http) -> list[dict[str, Any]]:
        """``GET /v1/models``: the router's entries, each with ``providers[]``."""
        body, _ = await self._get(http, "/v1/models")
        data = body.get("data") if isinstance(body, dict) else None
        if not isinstance(data, list):
            raise ProtocolError("GET /v1/models: answer has no 'data' list (is this the router's /v1 base?)")
        return [m for m in data if isinstance(m, dict) and m.get("id")]

    async def liveness(self, http: Http) -> Verdict:
        entries = await self.catalogue(http)
        live = sum(1 for m in entries if _live(m))
        return PASS, f"GET /v1/models: {len(entries)} models, {live} with a live provider"

    async def models(self, http: Http) -> list[str]:
        """Models with at least one live provider, then the names the router accepts for them: each listed
        provider (``org/m:together``) and each policy (``org/m:cheapest``), so that a check of
        ``--model org/m:together`` keeps its provider choice."""
        entries = [m for m in await self.catalogue(http) if _live(m)]
        plain = [str(m["id"]) for m in entries]
        suffixed = [f"{m['id']}:{c}" for m in entries
                    for c in (*POLICIES, *(str(p.get("provider")) for p in _providers(m)))]
        return plain + suffixed

    async def gpu_residency(self, http: Http, model: str, *, expect_gpu: bool | None) -> Verdict | None:
        return None  # the providers' GPUs are not ours to see

    # -- function ------------------------------------------------------------------------------------------
    def function_steps(self, http: Http, model: str, max_tokens: int) -> list[Step]:
        base, chain = self.chain_for(model)
        token = self.settings.token

        async def token_row() -> Verdict:
            if token.warning:
                return WARN, token.warning
            return PASS, f"from {token.origin}"

        async def providers_row() -> Verdict:
            return await self._providers_verdict(http, base, chain)

        async def plain() -> Verdict:
            return await self._completion_verdict(http, base, chain, max_tokens, stream=False)

        async def streamed() -> Verdict:
            return await self._completion_verdict(http, base, chain, max_tokens, stream=True)

        steps: list[Step] = [("token", token_row)] if token.origin else []
        return [*steps, ("providers", providers_row), ("completion", plain), ("stream", streamed)]

    async def _providers_verdict(self, http: Http, base: str, chain: tuple[str, ...]) -> Verdict:
        try:
            entry, _ = await self._get(http, f"/v1/models/{base}")
        except ProtocolError as exc:
            if exc.status != 404:
                raise
            entry = next((m for m in await self.catalogue(http) if m.get("id") == base), None)
        if isinstance(entry, dict) and isinstance(entry.get("data"), list):
            entry = next((m for m in entry["data"] if isinstance(m, dict) and m.get("id") == base), None)
        if not isinstance(entry, dict):
            return FAIL, f"{base} is not listed by GET /v1/models"
        provs = _providers(entry)
        listed = ", ".join(_describe_provider(p) for p in provs) or "no providers listed"
        status = {str(p.get("provider")): str(p.get("status", "?")) for p in provs}
        named = [c for c in chain if c != AUTO and c not in POLICIES]
        missing = [c for c in named if c not in status]
        down = [c for c in named if c in status and status[c] != "live"]
        any_live = any(s == "live" for s in status.values())
        usable = [c for c in chain if (c in (AUTO, *POLICIES) and any_live) or status.get(c) == "live"]
        problems = [f"{c} does not serve {base}" for c in missing] + [f"{c} is {status[c]}" for c in down]
        if not usable:
            why = "; ".join(problems) or "no provider is live"
            return FAIL, f"{why}; listed: {listed}"
        if problems:
            return WARN, f"{'; '.join(problems)}; listed: {listed}"
        return PASS, listed

    async def _completion_verdict(self, http: Http, base: str, chain: tuple[str, ...], max_tokens: int,
                                  *, stream: bool) -> Verdict:
        body = oa.chat_payload(base, PROMPT, max_tokens, stream=stream)
        out = await call(http, base, chain, body, self.settings.retries, None)
        model = with_choice(base, chain[0])
        if out.answer is None:
            assert out.failure is not None
            tried = f" (tried {', '.join(chain)})" if len(chain) > 1 else ""
            return FAIL, self._scrub(http, out.failure.reason(model) + tried)
        a = out.answer
        served = a.served_by or "unknown (no x-inference-provider header)"
        moves = ""
        if out.failed:
            moves = "; after " + ", ".join(f"{f.choice}: {f.title()} (x-request-id {f.request_id or 'none'})"
                                           for f in out.failed)
        if not a.text.strip():
            return FAIL, f"empty answer served by {served}; x-request-id {a.request_id}{moves}"
        what = f"SSE: {a.chunks} chunks, " if stream else ""
        tokens = a.usage.get("completion_tokens", "?")
        return PASS, self._scrub(http, f"served by {served}: {what}{tokens} tokens; x-request-id {a.request_id}"
                                       f"{moves}")

    @staticmethod
    def _scrub(http: Http, text: str) -> str:
        return text.replace(http.api_key, "***") if http.api_key else text

    # -- benchmark requests ----------------------------------------------------------------------------------
    async def send(self, http: Http, api: str, model: str, prompt: str, params: RequestParams) -> RequestResult:
        """One streamed chat completion through the router (provider choice, failover, retries)."""
        base, chain = self.chain_for(model)
        extra: dict[str, Any] = dict(params.extra)  # ignore_eos is not sent: hosted providers reject it
        if params.temperature is not None:
            extra["temperature"] = params.temperature
        if params.top_p is not None:
            extra["top_p"] = params.top_p
        body = oa.chat_payload(base, prompt, params.max_tokens, stream=True, **extra)
        res = RequestResult()
        st = time.perf_counter()
        out = await call(http, base, chain, body, self.settings.retries, params.request_timeout,
                         headers=params.headers)
        res.failovers = out.failovers
        res.engine_stats = {"retries": out.retries}
        # every failed attempt with its x-request-id (what HF support asks for), the final failure included
        res.failed_attempts = [f"{f.choice}: {f.kind} {f.status or ''} x-request-id "
                               f"{f.request_id or 'none'}".replace("  ", " ") for f in out.failed]
        if out.answer is None:
            assert out.failure is not None
            res.request_id = out.failure.request_id
            res.error = self._scrub(http, out.failure.key(with_choice(base, chain[-1])))
            return res
        a = out.answer
        res.request_id = a.request_id
        res.served_by = a.served_by
        if a.first is None or a.chunks == 0:
            res.error = "never received a chunk with tokens (cannot compute TTFT)"
            return res
        res.ttft = a.first - st
        res.itl = a.itl
        res.latency = a.last - st
        res.chunks = a.chunks
        # a provider's odd counts ("3", -5) are "not reported" with a warning, as for the lab's own engines
        res.output_tokens, res.prompt_tokens, warning = usage_counts(a.usage)
        add_warning(res, warning)
        res.generated_text = a.text
        res.success = True
        return res

    def views(self, results: list[Any]) -> list[Any]:
        """Report views beside smoke-bench's table: the provider report (auto vs explicit), when any
        endpoint had a provider choice. (A hook for the CLI: ``for e in ENGINES.values(): e.views(results)``.)"""
        from ... import hf_report

        view = hf_report.table(hf_report.rows(results))
        return [view] if view is not None else []

    def summarise(self, ok: list[RequestResult]) -> dict[str, float]:
        """Retries spent on the successful requests (failovers and served_by are generic columns)."""
        return {"retries": float(sum(int(r.engine_stats.get("retries", 0)) for r in ok))}


def _bare_api_key_files(value: Any) -> set[str]:
    """The --api-key-file values meant for every endpoint (a bare FILE, not ENGINE=FILE)."""
    items = value if isinstance(value, list | tuple) else [value] if value else []
    return {str(v) for v in items if isinstance(v, str) and "=" not in v}


def _providers(entry: Mapping[str, Any]) -> list[dict[str, Any]]:
    provs = entry.get("providers")
    return [p for p in provs if isinstance(p, dict) and p.get("provider")] if isinstance(provs, list) else []


def _live(entry: Mapping[str, Any]) -> bool:
    return any(p.get("status") == "live" for p in _providers(entry))


def _describe_provider(p: Mapping[str, Any]) -> str:
    """``together live (TTFT 611 ms, 40.1 tok/s, $2.10/$4.40 per M in/out)``: HF's own probe figures."""
    figures = []
    if isinstance(p.get("first_token_latency_ms"), int | float):
        figures.append(f"TTFT {p['first_token_latency_ms']:.0f} ms")
    if isinstance(p.get("throughput"), int | float):
        figures.append(f"{p['throughput']:.1f} tok/s")
    price = p.get("pricing")
    if isinstance(price, dict) and isinstance(price.get("input"), int | float) \
            and isinstance(price.get("output"), int | float):
        figures.append(f"${price['input']:.2f}/${price['output']:.2f} per M in/out")
    tail = f" ({', '.join(figures)})" if figures else ""
    return f"{p.get('provider')} {p.get('status', '?')}{tail}"


ENGINE = HuggingFace()
