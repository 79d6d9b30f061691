"""The engine catalogue: one module per engine, each exporting ``ENGINE`` (an :class:`Engine`).

Adding an engine is adding one module here and its name to ``_MODULES``. Everything else (argv parsing,
compose discovery, inventory ports, compose-preflight, the diagnosis, checks and benchmarks) reads this
catalogue; a unit test holds compose/, the Ansible roles and the testinfra suite to it.
"""

from __future__ import annotations

import asyncio
import importlib

from ..errors import ConfigError, ProtocolError
from ..protocols import Http
from .base import Engine, RequestParams, Signature, Spec

# Detection order: the most specific probe first; ``openai`` (any /v1/models) last.
_MODULES = ("ollama", "llamacpp", "sglang", "vllm", "hf", "openai")

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


__all__ = ["CATALOGUE", "DEPLOYED", "ENGINES", "NAMES", "Engine", "RequestParams", "Signature", "Spec",
           "detect", "get"]
