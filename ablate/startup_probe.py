"""Measure a worker's start-up: in this process (`measure_startup`), or in a fresh one (`fresh_worker_startup`).

A fresh process imports what an `ablate run` worker imports (the command-line layer and the runner)
and times itself, so a parent that has long finished its own imports (e.g. `ablate plan`, `ablate
bench --startup`) can still measure a worker's start-up; `python -m ablate.startup_probe REQUEST` is
that child. The figures and what they mean: `ablate.startup.Startup`.
"""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from torch import nn

from .augment import Normalize, to_unit_float
from .datasets import CACHE_ENV, Data, DataConfig
from .device import resolve_device, synchronize
from .errors import AblateError
from .precision import autocast
from .recipe import Recipe, Runtime
from .startup import Startup, launch_env, process_age_s, timed_load
from .switches import torch_settings
from .train import ModelFactory, initial_model, make_optimizer, model_factory

if TYPE_CHECKING:
    from .spec import Study


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
    data, startup = timed_load(config, root, resolve_device(runtime.device), ready_s=process_age_s())
    deferred = deferred_import_s()
    first, second = step_times(model_factory(**(arm or {"backbone": "cnn"})), data, Recipe(batch_size=batch_size),
                               runtime)
    return Startup(startup.process_s, startup.data_s, startup.data_from, deferred, first, second)


def fresh_worker_startup(config: DataConfig, root: str | Path | None = None, *, runtime: Runtime = Runtime(),
                         batch_size: int = 64, arm: Mapping[str, Any] | None = None,
                         cache: str | Path | None = None, timeout_s: float = 300.0) -> Startup:
    """A new Python process's start-up, measured by itself (`python -m ablate.startup_probe`): what each
    extra worker costs. `cache` sets $ABLATE_DATA_CACHE for it (a folder, or 'off'); None keeps ours."""
    request = {"data": config.as_dict(), "root": str(root) if root is not None else None,
               "runtime": runtime.as_dict(), "batch_size": batch_size, "arm": dict(arm or {"backbone": "cnn"})}
    env = launch_env()
    if cache is not None:
        env[CACHE_ENV] = str(cache)
    done = subprocess.run([sys.executable, "-m", "ablate.startup_probe", json.dumps(request)], env=env,
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
