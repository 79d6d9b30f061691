"""Transitional: :mod:`healthchecks.gpu.residency` under its old path, for tests/e2e/test_gpu_residency_container.py
until it imports ``from healthchecks.gpu import residency`` and passes ``expect_gpu=`` by keyword."""

from __future__ import annotations

from collections.abc import Iterable

from .gpu.residency import EngineProcesses, descendants, engine_processes, listening_inodes, measure, ns_pid
from .gpu.residency import verdict as _verdict
from .verdicts import Signature


def verdict(signatures: Iterable[Signature], host: str, port: int, expect_gpu: bool | None  # noqa: FBT001
            ) -> tuple[str, str] | None:
    """The old positional form, for that test; the real one takes ``expect_gpu=`` by keyword."""
    return _verdict(signatures, host, port, expect_gpu=expect_gpu)


__all__ = ["EngineProcesses", "descendants", "engine_processes", "listening_inodes", "measure", "ns_pid", "verdict"]
