"""Transitional: :mod:`healthchecks.gpu.residency` and the nvidia-smi reader it uses, under their old path, for
tests/e2e/test_gpu_residency_container.py until it imports ``from healthchecks.gpu import residency``."""

from __future__ import annotations

from .gpu.residency import *  # noqa: F403
from .gpu.residency import __all__ as __all__
