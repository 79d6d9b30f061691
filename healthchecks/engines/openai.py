"""A generic OpenAI-compatible server (hosted APIs, proxies, engines the kit does not know): the base
behaviour, nothing more."""

from __future__ import annotations

from .base import Engine

ENGINE = Engine()
