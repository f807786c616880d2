"""What a worker pays before its first item trains: interpreter and imports, the dataset load, the first step.

Why it matters: N workers pay start-up N times, and a worker that starts for a few short items can
spend more time starting than training. The figures here say which part to shrink: imports (torch,
optuna: seconds, fixed), the dataset load (decoding on a cold cache; a memory-mapped read on a
warm one, see ablate.data), or the first training step (model build plus one-time kernel set-up:
oneDNN primitives, cuDNN autotuning, CUDA context). One import hides in between: torch imports
torch._dynamo (about 1 s on a 2-core CPU, sympy included) the first time an optimizer is built, and
torchvision's import pulls it in too; so decoding an idx dataset through torchvision pays it early
and a cache hit pays it at the first step. It is timed apart (`deferred_import_s`), so neither the
dataset load nor the first step is blamed for it.

`measure_startup` times this process (call it first thing in a worker); `fresh_worker_startup`
starts a new Python process that imports what an `ablate run` worker imports and times itself, so
a parent that has long finished its own imports (e.g. `ablate plan`) can still measure a worker's.
"""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from .augment import Normalize, to_unit_float
from .data import CACHE_ENV, Data, DataConfig, cache_entry, load_data
from .device import resolve_device
from .errors import AblateError
from .precision import autocast
from .recipe import Recipe, Runtime
from .timing import synchronize
from .train import ModelFactory, initial_model, make_optimizer, model_factory, torch_settings

if TYPE_CHECKING:
    from .spec import Study

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


def launch_env() -> dict[str, str]:
    """The environment for a child process, stamped with the launch time (read where /proc is missing)."""
    return {**os.environ, LAUNCH_ENV: repr(time.time())}


def timed_load(config: DataConfig, root: str | Path | None = None,
               device: torch.device | str = "cpu") -> tuple[Data, Startup]:
    """load_data, timed, saying whether the decoded dataset came from the cache; the Startup's
    process_s is taken just before the load (everything this process did until then)."""
    age = process_age_s()
    entry = cache_entry(config, root)
    source = DECODED if entry is None else FROM_CACHE if entry.is_dir() else DECODED_CACHED
    t0 = time.perf_counter()
    data = load_data(config, root, device)
    synchronize(data.device)
    return data, Startup(process_s=age, data_s=time.perf_counter() - t0, data_from=source)


def deferred_import_s() -> float:
    """Import what torch imports lazily on the first optimizer (see the module docstring); seconds taken."""
    t0 = time.perf_counter()
    importlib.import_module("torch._dynamo")
    return time.perf_counter() - t0


def step_times(model: nn.Module | ModelFactory, data: Data, recipe: Recipe, runtime: Runtime,
               seed: int = 0) -> tuple[float, float]:
    """(first step, second step) seconds on one batch of the training split; the first includes
    building the model (a factory), moving it to the device and one-time kernel set-up."""
    device = resolve_device(runtime.device)
    fmt, precision = runtime.memory_format, runtime.precision(device)
    data = data.to(device)
    with torch_settings(runtime, device):
        synchronize(device)
        t0 = time.perf_counter()
        net = initial_model(model, data.meta, seed).to(device=device, memory_format=fmt)
        optimizer = make_optimizer(net, recipe, device)
        criterion = nn.CrossEntropyLoss()
        normalize = Normalize(data.meta.mean, data.meta.std, device)
        images, labels = data.train.images[:recipe.batch_size], data.train.labels[:recipe.batch_size]
        times = []
        for _ in range(2):
            x = normalize(to_unit_float(images)).contiguous(memory_format=fmt)
            with autocast(device, precision):
                loss = criterion(net(x), labels)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            synchronize(device)
            times.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
    return times[0], times[1]


def measure_startup(config: DataConfig, root: str | Path | None = None, *, runtime: Runtime = Runtime(),
                    batch_size: int = 64, arm: Mapping[str, Any] | None = None) -> Startup:
    """This process's start-up: its age now, a timed dataset load, and the first two training steps
    of `arm` (model_factory keyword arguments; default: the plain cnn)."""
    data, startup = timed_load(config, root, resolve_device(runtime.device))
    deferred = deferred_import_s()
    first, second = step_times(model_factory(**(arm or {"backbone": "cnn"})), data, Recipe(batch_size=batch_size),
                               runtime)
    return Startup(startup.process_s, startup.data_s, startup.data_from, deferred, first, second)


def fresh_worker_startup(config: DataConfig, root: str | Path | None = None, *, runtime: Runtime = Runtime(),
                         batch_size: int = 64, arm: Mapping[str, Any] | None = None,
                         cache: str | Path | None = None, timeout_s: float = 300.0) -> Startup:
    """A new Python process's start-up, measured by itself (`python -m ablate.startup`): what each
    extra worker costs. `cache` sets $ABLATE_DATA_CACHE for it (a folder, or 'off'); None keeps ours."""
    request = {"data": config.as_dict(), "root": str(root) if root is not None else None,
               "runtime": runtime.as_dict(), "batch_size": batch_size, "arm": dict(arm or {"backbone": "cnn"})}
    env = launch_env()
    if cache is not None:
        env[CACHE_ENV] = str(cache)
    done = subprocess.run([sys.executable, "-m", "ablate.startup", json.dumps(request)], env=env,
                          capture_output=True, text=True, timeout=timeout_s)
    if done.returncode != 0:
        raise AblateError(f"the start-up probe failed (exit {done.returncode}): "
                          f"{(done.stderr.strip().splitlines() or ['no output'])[-1]}")
    return Startup(**json.loads(done.stdout.strip().splitlines()[-1]))


def study_startup(study: Study, root: str | Path | None = None) -> Startup:
    """A fresh worker's start-up for `study`: its dataset, runtime, batch size and first arm."""
    return fresh_worker_startup(study.dataset, root, runtime=study.runtime, batch_size=study.recipe.batch_size,
                                arm=study.arms[0].build_kwargs())


def _probe(request: Mapping[str, Any]) -> Startup:
    """The child side of fresh_worker_startup: import what a worker imports, then measure."""
    importlib.import_module("ablate.cli")  # the command-line layer a worker starts through
    importlib.import_module("ablate.runner")  # optuna, pandas, the runner

    return measure_startup(DataConfig.from_dict(request["data"], "start-up probe"), request["root"],
                           runtime=Runtime.from_dict(request["runtime"], "start-up probe"),
                           batch_size=int(request["batch_size"]), arm=request["arm"])


if __name__ == "__main__":
    result = _probe(json.loads(sys.argv[1]))
    print(json.dumps({k: v for k, v in result.as_dict().items() if k != "total_s"}))
