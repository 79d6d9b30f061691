"""The lab's gateway: the LiteLLM proxy (``litellm --config``), one OpenAI-compatible URL and key in front of
the engines. Everything the kit knows about LiteLLM's own API lives here; the shapes are LiteLLM 1.110.2's
(litellm/proxy/health_endpoints/_health_endpoints.py, litellm/proxy/proxy_server.py) and the replies in
tests/fixtures/gateway/ were captured from that proxy.

What ``healthcheck`` checks on a gateway, beside the rows every engine gets:

- ``liveness``: ``GET /health/liveliness`` (LiteLLM's spelling) answers 200 ``"I'm alive!"``.
- ``readiness``: ``GET /health/readiness`` is 200 with ``status: healthy`` (503 while shutting down or when its
  database is unreachable), then ``/v1/models`` lists the routes (model groups).
- ``route <model>``: a real (non-streamed) completion through every route ``/v1/models`` lists; the row names
  the upstream that answered (``x-litellm-model-api-base``) or, on failure, the route's upstreams as
  ``/model/info`` lists them.
- ``upstream <model> <host:port>``: each deployment's state as the gateway itself reports it
  (``GET /health`` with the key: ``healthy_endpoints`` / ``unhealthy_endpoints``, LiteLLM's own probe of each).
  A deployment whose ``model_info.disable_background_health_check`` is set (the kit's Hugging Face Inference
  Providers fallback: a paid remote service) is never probed by LiteLLM's background checks, so ``GET /health``
  does not list it: its row is a skip saying so, not a failure (its route row still sends it a real completion).
- ``wrong_key``: a made-up key is refused; ``auth`` (every engine): no key is refused with 401. A gateway that
  serves either is open to the whole network: a failure.

``smoke-bench`` through a gateway records per request who answered (``served_by``: the upstream's api_base),
the retries and fallbacks LiteLLM spent (``failovers``) and LiteLLM's own overhead; with the upstreams also
measured directly in the same run, ``views`` adds the gateway's cost (healthchecks/gateway_cost.py).
"""

from __future__ import annotations

import asyncio
import secrets
import weakref
from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from statistics import median
from typing import Any, ClassVar

import httpx

from ..errors import ProtocolError, redact
from ..metrics import RequestResult
from ..protocols import Http, error_reason, one_line, parse_json
from ..protocols import openai as oa
from ..verdicts import FAIL, PASS, SKIP, Verdict
from .base import Engine, RequestParams, Spec, Step, openai_request

# LiteLLM's response headers (litellm/proxy/common_request_processing.py get_custom_headers)
H_API_BASE = "x-litellm-model-api-base"
H_MODEL_ID = "x-litellm-model-id"
H_RETRIES = "x-litellm-attempted-retries"
H_FALLBACKS = "x-litellm-attempted-fallbacks"
H_OVERHEAD = "x-litellm-overhead-duration-ms"
H_VERSION = "x-litellm-version"

ROUTE_PROMPT = "Say hi."


@dataclass(frozen=True)
class Deployment:
    """One upstream of a route, as ``GET /model/info`` lists it (api keys are never part of its answer)."""

    route: str  # model_name: what clients ask for
    model: str  # litellm_params.model: provider/model, e.g. hosted_vllm/smollm2:135m
    api_base: str  # "" when LiteLLM does not show it (a non-admin key)
    id: str  # model_info.id: what x-litellm-model-id and /health's model_id name
    health_checked: bool = True  # False: model_info.disable_background_health_check, LiteLLM never probes it

    @property
    def where(self) -> str:
        """``host:port`` of the upstream (its api_base when that has no such part), or its provider model."""
        if self.api_base:
            try:
                url = httpx.URL(self.api_base)
            except httpx.InvalidURL:
                return self.api_base
            if url.host:
                return f"{url.host}:{url.port}" if url.port else url.host
            return self.api_base
        return self.model or self.id[:12]

    def describe(self) -> str:
        return f"{self.model} at {self.api_base}" if self.api_base else self.model or self.id[:12]


@dataclass
class UpstreamState:
    """One entry of ``GET /health``: healthy or not, and LiteLLM's error when not."""

    healthy: bool
    model: str
    api_base: str
    id: str
    error: str = ""


@dataclass
class Routes:
    """What the gateway serves: its routes (``/v1/models``) and their upstreams (``/model/info``)."""

    names: list[str]
    deployments: list[Deployment] = field(default_factory=list)
    info_error: str = ""  # why /model/info could not be read ("" when it was)

    def of(self, route: str) -> list[Deployment]:
        return [d for d in self.deployments if d.route == route]

    def by_id(self, model_id: str | None) -> Deployment | None:
        return next((d for d in self.deployments if model_id and d.id == model_id), None)


# -- LiteLLM's replies, parsed (unit-tested against replies captured from the real proxy) ---------------------------
def parse_model_info(body: Any) -> list[Deployment]:
    """``GET /model/info``: ``{"data": [{"model_name", "litellm_params": {"model", "api_base"}, "model_info":
    {"id", "disable_background_health_check"}}]}``. Entries of another shape are left out."""
    data = body.get("data") if isinstance(body, dict) else None
    out = []
    for d in data if isinstance(data, list) else []:
        if not isinstance(d, dict) or not isinstance(d.get("model_name"), str):
            continue
        params, info = d.get("litellm_params"), d.get("model_info")
        params = params if isinstance(params, dict) else {}
        info = info if isinstance(info, dict) else {}
        out.append(Deployment(d["model_name"], _str(params.get("model")), _str(params.get("api_base")),
                              _str(info.get("id")), info.get("disable_background_health_check") is not True))
    return out


def parse_health(body: Any) -> list[UpstreamState]:
    """``GET /health``: ``{"healthy_endpoints": [...], "unhealthy_endpoints": [...], "healthy_count",
    "unhealthy_count"}``, each endpoint ``{"model", "api_base", "model_id"}`` plus ``"error"`` when unhealthy
    (non-admin keys see no api_base). Raises ProtocolError when the answer is not that shape."""
    if not isinstance(body, dict) or not isinstance(body.get("healthy_endpoints"), list) \
            or not isinstance(body.get("unhealthy_endpoints"), list):
        raise ProtocolError("GET /health: answer has no healthy_endpoints / unhealthy_endpoints lists")
    out = []
    for healthy, key in ((True, "healthy_endpoints"), (False, "unhealthy_endpoints")):
        for e in body[key]:
            if not isinstance(e, dict):
                continue
            error = "" if healthy else one_line(_str(e.get("error")) or "unhealthy (no error given)", 240)
            out.append(UpstreamState(healthy, _str(e.get("model")), _str(e.get("api_base")), _str(e.get("model_id")),
                                     error))
    return out


def readiness_verdict(status: int, body: Any) -> str:
    """``GET /health/readiness``: "" when ready (200, ``status: healthy``), else why not."""
    state = body.get("status") if isinstance(body, dict) else None
    db = body.get("db") if isinstance(body, dict) else None
    if status == 200 and state == "healthy":
        return ""
    detail = f"status {state!r}" if state is not None else "no status field"
    if isinstance(db, str) and db not in ("connected", "Not connected"):
        detail += f", database {db}"
    return f"GET /health/readiness {status}: {detail}"


def refused(status: int, body: str) -> Verdict:
    """A request with a made-up key. LiteLLM without a database answers 400 ``no_db_connection`` (only the master
    key is valid: there is nowhere to look other keys up); with one, 401. Anything 2xx is an open gateway."""
    if status in (401, 403):
        return PASS, f"a made-up key refused ({status})"
    if status == 400 and "no_db_connection" in body:
        return PASS, "a made-up key refused (400: no database, only the master key is valid)"
    if 200 <= status < 300:
        return FAIL, f"a made-up key was served ({status}): the gateway enforces no key"
    return FAIL, f"a made-up key answered {status}, expected 401 or 403"


def _str(value: Any) -> str:
    return value if isinstance(value, str) else ""


class _Tapped(Http):
    """``Http`` that keeps the response headers of its stream (LiteLLM tells who answered in them)."""

    def __init__(self, http: Http) -> None:
        super().__init__(http.base, http.timeout, http.api_key, http.client)
        self.seen: httpx.Headers | None = None

    def stream(self, path: str, payload: Mapping[str, Any], fmt: str, *, strict: bool = True,
               headers: Mapping[str, str] | None = None, batch: bool = False,
               on_response: Callable[[httpx.Response], Awaitable[None]] | None = None,
               ) -> AsyncGenerator[tuple[float, Any], None]:
        async def tap(r: httpx.Response) -> None:
            self.seen = r.headers
            if on_response is not None:
                await on_response(r)
        return super().stream(path, payload, fmt, strict=strict, headers=headers, batch=batch, on_response=tap)


def _count(headers: httpx.Headers | None, name: str) -> int:
    try:
        return max(0, int(float(headers.get(name, "0")))) if headers is not None else 0
    except ValueError:
        return 0


def _ms(headers: httpx.Headers | None, name: str) -> float | None:
    try:
        v = float(headers[name]) if headers is not None and name in headers else None
    except ValueError:
        return None
    return v if v is not None and v >= 0 and v == v and v != float("inf") else None


class Gateway(Engine):
    spec = Spec("gateway", "LiteLLM proxy (gateway)", default_port=4000, deployed=False, compose_service="gateway",
                env_port="GATEWAY_PORT", env_model="GATEWAY_MODEL", env_api_key_file="GATEWAY_MASTER_KEY_FILE",
                ansible_port="gateway_port", ansible_model="gateway_model")
    probe_path = "/health/liveliness"
    health_path = "/health/liveliness"
    structured_output = None  # a property of the upstream engine, checked there
    known_features = True
    metrics_prefix = None  # LiteLLM's Prometheus metrics are an enterprise callback
    # routes and upstreams read by ``models`` for the rows ``function_steps`` builds, per endpoint's Http
    _routes: ClassVar[weakref.WeakKeyDictionary[Http, Routes]] = weakref.WeakKeyDictionary()

    def recognise(self, status: int, text: str) -> bool:
        return status == 200 and "I'm alive" in text

    async def models(self, http: Http) -> list[str]:
        """Ready (``/health/readiness``), then the routes (``/v1/models``) and their upstreams (``/model/info``)."""
        status, body = await _get_json(http, "/health/readiness", auth=False)
        if why := readiness_verdict(status, body):
            raise ProtocolError(why, status=status)
        try:
            names = await oa.models(http)
        except ProtocolError as exc:
            if exc.status == 401 and not http.api_key:
                raise ProtocolError(f"{exc.reason}: the gateway requires its key (--api-key-file gateway=FILE, "
                                    "the master key file)", status=401) from None
            raise
        routes = Routes(names)
        try:
            _, info, _ = await http.request("GET", "/model/info")
            routes.deployments = parse_model_info(info)
        except ProtocolError as exc:
            routes.info_error = f"GET /model/info: {exc.reason}"
        self._routes[http] = routes
        return names

    async def version(self, http: Http) -> str | None:
        """LiteLLM names its version in ``/health/readiness/details`` (the key's) and in every answer's header."""
        _, body, _ = await http.request("GET", "/health/readiness/details")
        v = body.get("litellm_version") if isinstance(body, dict) else None
        return f"LiteLLM {v}" if isinstance(v, str) and v else None

    async def gpu_residency(self, http: Http, model: str, *, expect_gpu: bool | None) -> Verdict | None:
        return None  # the gateway holds no model: residency is checked on the engines behind it

    # -- the gateway's own rows --------------------------------------------------------------------------------
    def function_steps(self, http: Http, model: str, max_tokens: int) -> list[Step]:
        steps = super().function_steps(http, model, max_tokens)
        routes = self._routes.get(http) or Routes([model])
        for name in routes.names:
            steps.append((f"route {name}", _route_step(http, routes, name, max_tokens)))
        steps += _upstream_steps(http, routes)
        steps.append(("wrong_key", lambda: _wrong_key(http, model)))
        return steps

    # -- benchmark requests ----------------------------------------------------------------------------------
    async def send(self, http: Http, api: str, model: str, prompt: str, params: RequestParams) -> RequestResult:
        """The upstream's own request through the gateway, timed alike; LiteLLM's headers say who answered
        (``served_by``: the upstream's api_base), the retries and fallbacks it spent (``failovers``) and its own
        overhead (``engine_stats``)."""
        tapped = _Tapped(http)
        res = await openai_request(tapped, api, model, prompt, params)
        h = tapped.seen
        if h is not None:
            res.served_by = h.get(H_API_BASE) or h.get(H_MODEL_ID) or None
            retries, fallbacks = _count(h, H_RETRIES), _count(h, H_FALLBACKS)
            res.failovers = retries + fallbacks
            res.engine_stats = {"retries": retries, "fallbacks": fallbacks}
            if (overhead := _ms(h, H_OVERHEAD)) is not None:
                res.engine_stats["overhead_ms"] = overhead
        return res

    def summarise(self, ok: list[RequestResult]) -> dict[str, float]:
        """Retries and fallbacks LiteLLM spent on the successful requests, and its own overhead (its
        ``x-litellm-overhead-duration-ms``: time in the proxy outside the upstream call)."""
        stats = {"retries": float(sum(int(r.engine_stats.get("retries", 0)) for r in ok)),
                 "fallbacks": float(sum(int(r.engine_stats.get("fallbacks", 0)) for r in ok))}
        overheads = [float(r.engine_stats["overhead_ms"]) for r in ok if "overhead_ms" in r.engine_stats]
        if overheads:
            stats["overhead_ms_median"] = median(overheads)
        return stats

    def views(self, results: list[Any]) -> list[Any]:
        """The gateway's cost beside the upstreams measured directly in the same run (gateway_cost.py); the
        figures also go into each gateway result (``engine_stats``, hence JSON and HTML)."""
        from .. import gateway_cost

        gateways = [r for r in results if r.engine == self.name]
        if not gateways:
            return []
        costs = gateway_cost.compare(gateways, [r for r in results if r.engine != self.name])
        gateway_cost.annotate(costs)
        view = gateway_cost.table(costs)
        return [view] if view is not None else []


async def _get_json(http: Http, path: str, *, auth: bool = True) -> tuple[int, Any]:
    """(status, decoded JSON) of a GET whatever its status (LiteLLM's probes answer JSON with 503 too)."""
    try:
        r = await http.client.get(http.base + path, headers=http.headers(auth=auth), timeout=http.timeout)
    except httpx.HTTPError as exc:
        from ..protocols import describe

        raise ProtocolError(describe(exc, http.base + path)) from None
    try:
        return r.status_code, parse_json(r.text, f"GET {path}")
    except ProtocolError:
        if r.status_code >= 400:
            raise ProtocolError(error_reason(r.status_code, r.text, r.headers.get("content-type", "")),
                                status=r.status_code) from None
        raise


def _route_step(http: Http, routes: Routes, name: str, max_tokens: int) -> Callable[[], Awaitable[Verdict]]:
    async def run() -> Verdict:
        body = oa.chat_payload(name, ROUTE_PROMPT, max_tokens, stream=False)
        try:
            r = await http.client.post(http.base + "/v1/chat/completions", json=body, headers=http.headers(),
                                       timeout=http.timeout)
        except httpx.HTTPError as exc:
            from ..protocols import describe

            raise ProtocolError(describe(exc, http.base)) from None
        served = routes.by_id(r.headers.get(H_MODEL_ID))
        if r.status_code >= 400:
            ups = [served] if served else routes.of(name)
            where = ", ".join(d.describe() for d in ups) or routes.info_error or "no upstream listed by /model/info"
            why = error_reason(r.status_code, r.text, r.headers.get("content-type", ""))
            return FAIL, redact(one_line(f"upstream {where}: {why}", 400))
        doc = parse_json(r.text, f"POST /v1/chat/completions (model {name})")
        choices = doc.get("choices") if isinstance(doc, dict) else None
        first = choices[0] if isinstance(choices, list) and choices else None
        content, reasoning = oa.message_parts(first.get("message") if isinstance(first, dict) else None)
        if not (content.strip() or reasoning.strip()):
            return FAIL, f"empty answer through route {name}"
        usage = oa.usage_of(doc)
        by = r.headers.get(H_API_BASE) or (served.describe() if served else "an upstream")
        extra = []
        if (n := _count(r.headers, H_RETRIES) + _count(r.headers, H_FALLBACKS)):
            extra.append(f"after {n} retries/fallbacks")
        if (overhead := _ms(r.headers, H_OVERHEAD)) is not None:
            extra.append(f"LiteLLM overhead {overhead:.0f} ms")
        return PASS, (f"{usage.get('completion_tokens', '?')} tokens from {by}"
                      + (f" ({', '.join(extra)})" if extra else ""))
    return run


def _upstream_steps(http: Http, routes: Routes) -> list[Step]:
    """One row per upstream from one ``GET /health`` (LiteLLM probes every deployment, or answers its background
    checks' last results). Without /model/info's list: one ``upstreams`` row over what /health names."""
    shared: list[asyncio.Future[list[UpstreamState]]] = []

    async def states() -> list[UpstreamState]:
        if not shared:
            shared.append(asyncio.ensure_future(_health(http)))
        return await asyncio.shield(shared[0])

    def one(dep: Deployment) -> Callable[[], Awaitable[Verdict]]:
        async def run() -> Verdict:
            found = [s for s in await states() if (dep.id and s.id == dep.id)
                     or (not s.id and s.model == dep.model and s.api_base == dep.api_base)]
            if not found and not dep.health_checked:  # LiteLLM's background checks skip it: no state to read
                return SKIP, unchecked(dep)
            if not found:
                return FAIL, f"{dep.describe()}: not in the gateway's GET /health answer"
            bad = next((s for s in found if not s.healthy), None)
            if bad is not None:
                return FAIL, redact(one_line(f"{dep.describe()} unhealthy as the gateway reports it: {bad.error}", 400))
            return PASS, f"{dep.describe()} healthy as the gateway reports it"
        return run

    def unchecked(dep: Deployment) -> str:
        why = (f"{dep.describe()}: not health-checked by the gateway (its model_info.disable_background_health_check"
               " is set, so LiteLLM's GET /health does not list it)")
        return why + (f"; the route {dep.route} row checks it with a real completion"
                      if routes.of(dep.route) == [dep] and dep.route in routes.names else "")

    async def summary() -> Verdict:
        found = await states()
        bad = [s for s in found if not s.healthy]
        if bad:
            return FAIL, redact(one_line("; ".join(f"{s.model} at {s.api_base or '?'} unhealthy: {s.error}"
                                                   for s in bad), 400))
        if not found:
            return FAIL, "GET /health lists no upstream"
        return PASS, f"{len(found)} upstream(s) healthy as the gateway reports them"

    if not routes.deployments:
        return [("upstreams", summary)]
    return [(f"upstream {d.route} {d.where}", one(d)) for d in routes.deployments]


async def _health(http: Http) -> list[UpstreamState]:
    _, body, _ = await http.request("GET", "/health")
    return parse_health(body)


async def _wrong_key(http: Http, model: str) -> Verdict:
    made_up = "sk-healthcheck-" + secrets.token_hex(8)
    try:
        r = await http.client.post(http.base + "/v1/chat/completions",
                                   json=oa.chat_payload(model, "hi", 1, stream=False),
                                   headers={"Authorization": f"Bearer {made_up}"}, timeout=http.timeout)
    except httpx.HTTPError as exc:
        from ..protocols import describe

        raise ProtocolError(describe(exc, http.base)) from None
    return refused(r.status_code, r.text)


ENGINE = Gateway()
