"""The engine catalogue: one module per engine, each exporting ``ENGINE`` (an :class:`Engine`).

Adding an engine is adding one module here and its name to ``_MODULES``. Everything else (argv parsing,
compose discovery, inventory ports, compose-preflight, the diagnosis, checks and benchmarks) reads this
catalogue; a unit test holds compose/, the Ansible roles and the testinfra suite to it.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
from typing import TYPE_CHECKING

from ..errors import ConfigError, ProtocolError
from ..protocols import Http, read_api_key
from ..verdicts import Signature
from .base import Engine, RequestParams, Spec

if TYPE_CHECKING:
    from ..endpoints.url import Endpoint

# Detection order: the most specific probe first; ``openai`` (any /v1/models) last.
_MODULES = ("ollama", "llamacpp", "sglang", "vllm", "gateway", "hf", "openai")

ENGINES: dict[str, Engine] = {n: importlib.import_module(f"{__name__}.{n}").ENGINE for n in _MODULES}
CATALOGUE: dict[str, Spec] = {n: e.spec for n, e in ENGINES.items()}
NAMES: tuple[str, ...] = tuple(ENGINES)
# The kit's own stack (compose + Ansible), in the order README and the CLIs list them
DEPLOYED: tuple[str, ...] = tuple(n for n in ("vllm", "ollama", "llamacpp") if CATALOGUE[n].deployed)
assert set(DEPLOYED) == {n for n, s in CATALOGUE.items() if s.deployed}


def get(name: str) -> Engine:
    try:
        return ENGINES[name]
    except KeyError:
        raise ConfigError(f"unknown engine {name!r}: expected one of {', '.join(NAMES)}") from None


async def detect(http: Http) -> Engine:
    """Probe a bare URL with every engine's recognising GET at once; the first engine that recognises its
    answer wins (catalogue order). Nothing recognised: the transport error of ``GET /``, else a one-liner."""
    paths = list(dict.fromkeys(e.probe_path for e in ENGINES.values()))
    answers = dict(zip(paths, await asyncio.gather(*(http.probe(p) for p in paths)), strict=True))
    for engine in ENGINES.values():
        status, text = answers[engine.probe_path]
        if engine.recognise(status, text):
            return engine
    await http.request("GET", "/", expect="text")
    raise ProtocolError(f"{http.base} answers HTTP but not like any engine the kit knows "
                        f"({', '.join(NAMES)})")


async def _detect_with_keys(ep: Endpoint, http: Http) -> Engine:
    """Recognise a bare URL. A keyed server may refuse every probe without its key (llama-server answers 401
    on all but /health): when only a generic server was recognised, or nothing, each per-engine key
    (``--api-key-file ENGINE=FILE``) gets a try, and counts when its own engine is then recognised."""
    try:
        engine: Engine | None = await detect(http)
    except ProtocolError as exc:
        engine, first = None, exc
    if engine is not None and type(engine) is not Engine:  # the base class is the generic server
        return engine
    for name, own in ep.per_engine.items():
        if "api_key_file" not in own:
            continue
        keyed = Http(ep.url, http.timeout, read_api_key(own["api_key_file"]), http.client)
        with contextlib.suppress(ProtocolError):
            if (found := await detect(keyed)).name == name:
                return found
    if engine is None:
        raise first
    return engine


async def resolve(ep: Endpoint, http: Http) -> tuple[Endpoint, Engine, Http]:
    """The engine behind ``ep`` and the endpoint rebuilt for it, for both CLIs. A named engine is taken as is. A
    bare URL is detected (per-engine keys tried, see :func:`_detect_with_keys`) and rebuilt: its own --model /
    --api-key-file apply, its label names the engine, and its ``Http`` carries its own key when that differs."""
    if ep.engine:
        return ep, get(ep.engine), http
    engine = await _detect_with_keys(ep, http)
    ep = ep.as_engine(engine.name)
    if (key := read_api_key(ep.api_key_file, env=ep.api_key_env)) != http.api_key:
        http = Http(ep.url, http.timeout, key, http.client)
    return ep, engine, http


__all__ = ["CATALOGUE", "DEPLOYED", "ENGINES", "NAMES", "Engine", "RequestParams", "Signature", "Spec",
           "detect", "get", "resolve"]
