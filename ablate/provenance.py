"""What software and hardware produced a result, so a reader knows what a rerun can promise.

Float results on CPU are bit-identical only on the same CPU model, at the same thread count, with the
same package versions (`requirements.lock`); anywhere else a rerun agrees only statistically (another
learning-rate trajectory, other per-image outcomes). Every final trial stores this record; a worker
that adds runs to a study whose earlier runs came from another environment warns, and the report says
which runs came from which.
"""

from __future__ import annotations

import hashlib
import json
import platform
from collections.abc import Iterable, Mapping
from importlib import metadata
from typing import Any

from .device import cpu_model

PACKAGES = ("torch", "torchvision", "numpy", "optuna", "scipy", "pandas", "fvcore")  # the ones that move numbers


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "absent"


def environment(device: str, threads: int) -> dict[str, Any]:
    """The environment of one run: what decides whether another run can repeat its floats bit for bit."""
    record: dict[str, Any] = {"cpu": cpu_model(), "device": device, "threads": threads,
                              "python": platform.python_version(), "machine": platform.machine()}
    record.update({p: _version(p) for p in PACKAGES})
    record["id"] = environment_id(record)
    return record


def environment_id(record: Mapping[str, Any]) -> str:
    """A short stable id of an environment record (its own 'id' key aside)."""
    body = json.dumps({k: v for k, v in record.items() if k != "id"}, sort_keys=True, default=str)
    return hashlib.sha256(body.encode()).hexdigest()[:12]


def describe(record: Mapping[str, Any]) -> str:
    """One line for logs and reports."""
    packages = ", ".join(f"{p} {record.get(p, '?')}" for p in PACKAGES[:4])
    return (f"{record.get('cpu', '?')} ({record.get('device', '?')}, {record.get('threads', '?')} thread(s)), "
            f"Python {record.get('python', '?')}, {packages}")


def mismatch_warning(mine: Mapping[str, Any], earlier: Iterable[Mapping[str, Any]]) -> str | None:
    """A warning when runs already stored came from another environment than this worker's, else None."""
    others = {r["id"]: r for r in earlier if isinstance(r, Mapping) and r.get("id") and r["id"] != mine["id"]}
    if not others:
        return None
    differ = sorted({k for r in others.values() for k in r if k != "id" and r.get(k) != mine.get(k)})
    return (f"warning: this study already holds final runs from {len(others)} other environment(s) "
            f"(they differ in: {', '.join(differ)}); this worker runs on {describe(mine)}. Runs from different "
            "CPU models, thread counts or package versions agree only statistically, not bit for bit; the report "
            "lists which runs came from which environment.")
