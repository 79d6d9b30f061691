"""The one attribution of GPU memory to processes: what a set of PIDs holds per GPU, at one instant
(healthcheck's residency row, smoke-bench's sampler) or as each owner's peak over timestamped samples
(``gpu-report``). A process whose memory is unknown or zero holds none. Pure."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping

from .smi import ComputeApp


def attribute(apps: Iterable[ComputeApp], pids: set[int], uuid_index: Mapping[str, str]) -> dict[str, float]:
    """MiB held by ``pids`` per GPU index (GPUs where they hold nothing are left out)."""
    out: dict[str, float] = {}
    for app in apps:
        if app.pid in pids and app.used_mib > 0:
            idx = uuid_index.get(app.gpu_uuid, app.gpu_uuid)
            out[idx] = out.get(idx, 0.0) + app.used_mib
    return out


def peaks(apps: Iterable[ComputeApp], owners: Mapping[str, set[int]], uuid_index: Mapping[str, str]
          ) -> dict[str, dict[str, float]]:
    """Per owner (an engine): the highest, over the samples' timestamps, of what its PIDs held together on
    each GPU at that instant (:func:`attribute` per instant)."""
    at: dict[str, list[ComputeApp]] = defaultdict(list)
    for app in apps:
        at[app.timestamp].append(app)
    out: dict[str, dict[str, float]] = {o: {} for o in owners}
    for instant in at.values():
        for owner, pids in owners.items():
            for idx, held in attribute(instant, pids, uuid_index).items():
                out[owner][idx] = max(out[owner].get(idx, 0.0), held)
    return out
