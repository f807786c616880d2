"""What a worker pays before its first item trains: interpreter and imports, the dataset load, the first step.

Why it matters: N workers pay start-up N times, and a worker that starts for a few short items can
spend more time starting than training. The figures here say which part to shrink: imports (torch,
optuna: seconds, fixed), the dataset load (decoding on a cold cache; a memory-mapped read on a
warm one, see ablate.datasets), or the first training step (model build plus one-time kernel set-up:
oneDNN primitives, cuDNN autotuning, CUDA context). One import hides in between: torch imports
torch._dynamo (about 1 s on a 2-core CPU, sympy included) the first time an optimizer is built, and
torchvision's import pulls it in too; so decoding an idx dataset through torchvision pays it early
and a cache hit pays it at the first step. It is timed apart (`deferred_import_s`), so neither the
dataset load nor the first step is blamed for it.

This module holds the record (`Startup`) and what a worker times about itself as it goes
(`timed_load`, `process_age_s`); measuring a whole start-up, here or in a fresh process, is
`ablate.startup_probe`.

Start-up ends before any phase work: a worker's first process runs the profile phase before it loads
the dataset, so "interpreter + imports" is the process's age when start-up ended (`IMPORTED_S`, taken
when the runner imports this module, or what the caller passes), never its age at the dataset load.
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from .datasets import Data, DataConfig, cache_entry, load_data
from .device import synchronize

LAUNCH_ENV = "ABLATE_LAUNCH_TS"  # epoch seconds a parent may set when it launches a worker (no /proc)
FROM_CACHE, DECODED_CACHED, DECODED = "memory-mapped cache", "decoded, cache written", "decoded, no cache"


@dataclass(frozen=True)
class Startup:
    """One worker's start-up, in seconds."""

    process_s: float | None  # process start -> ready to load data: interpreter, imports, set-up (None: unknown)
    data_s: float  # load_data, wall clock (read/decode, subset, split, move to the device)
    data_from: str  # FROM_CACHE, DECODED_CACHED or DECODED
    deferred_import_s: float | None = None  # torch._dynamo, imported on first use (0 when the load already did)
    first_step_s: float | None = None  # model build + first forward/backward/optimizer step (kernel set-up)
    step_s: float | None = None  # the second step: what a step costs once set up

    @property
    def total_s(self) -> float:
        return (self.process_s or 0.0) + self.data_s + (self.deferred_import_s or 0.0) + (self.first_step_s or 0.0)

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "total_s": self.total_s}

    def line(self) -> str:
        """One line for a worker's log or a plan."""
        parts = [f"interpreter + imports {self.process_s:.2f} s" if self.process_s is not None
                 else "interpreter + imports ?", f"dataset {self.data_s:.2f} s ({self.data_from})"]
        if self.deferred_import_s is not None:
            parts.append(f"torch._dynamo import {self.deferred_import_s:.2f} s")
        if self.first_step_s is not None:
            parts.append(f"first training step {self.first_step_s:.2f} s"
                         + (f" (then {self.step_s * 1e3:.0f} ms per step)" if self.step_s is not None else ""))
        return f"start-up {self.total_s:.2f} s: " + ", ".join(parts)


def process_age_s() -> float | None:
    """Seconds since this process started: /proc's start time on Linux, else $ABLATE_LAUNCH_TS, else None."""
    try:
        stat = Path("/proc/self/stat").read_text()
        start_ticks = int(stat.rsplit(")", 1)[1].split()[19])  # field 22, counted after the ')' of the name
        return time.clock_gettime(time.CLOCK_BOOTTIME) - start_ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, AttributeError):
        pass
    launched = os.environ.get(LAUNCH_ENV)
    try:
        return time.time() - float(launched) if launched else None
    except ValueError:
        return None


IMPORTED_S = process_age_s()  # this process's age when ablate.startup was imported: a worker's imports done


def launch_env() -> dict[str, str]:
    """The environment for a child process, stamped with the launch time (read where /proc is missing)."""
    return {**os.environ, LAUNCH_ENV: repr(time.time())}


def timed_load(config: DataConfig, root: str | Path | None = None, device: torch.device | str = "cpu",
               ready_s: float | None = None) -> tuple[Data, Startup]:
    """load_data, timed, saying whether the decoded dataset came from the cache. The Startup's process_s is
    `ready_s` (the process's age where start-up ended, taken with process_age_s() before any phase work),
    by default IMPORTED_S: work done between then and the load (a profile phase) is not start-up."""
    age = IMPORTED_S if ready_s is None else ready_s
    entry = cache_entry(config, root)
    source = DECODED if entry is None else FROM_CACHE if entry.is_dir() else DECODED_CACHED
    t0 = time.perf_counter()
    data = load_data(config, root, device)
    synchronize(data.device)
    return data, Startup(process_s=age, data_s=time.perf_counter() - t0, data_from=source)
