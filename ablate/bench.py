"""Is the engine fast, and is its bookkeeping cheap? Three loops over identical data and models.

1. ref000 loop: what the tutorial does. A torchvision-style Dataset that hands out PIL images,
   transforms.Compose(RandomCrop(padding=4), RandomHorizontalFlip, ColorJitter(0.2, 0.2, 0.2, 0.1),
   RandomRotation(15), ToTensor, Normalize), DataLoader(shuffle=True, num_workers=2), plain Adam,
   `loss.item()` and `.sum().item()` every step, fp32, contiguous NCHW.
2. ablate's engine: `train()` with the same augmentation, batch size, epochs and model.
   Ratio = engine samples/s / ref000-loop samples/s.
3. Harness overhead: `train()` without augmentation against a bare loop over the same
   device tensors (slice, normalise, forward, backward, step: nothing else), with the same
   runtime switches. Overhead = bare samples/s / engine samples/s - 1.

Throughput counts training only (no evaluation), over whole epochs, synchronised on CUDA. Each
pair of loops is run alternately `repeats` times and the best of each is kept, because a shared
2-core machine is noisy.

4. Scaling (`ablate bench --workers`): does a second worker pay? The same generated final phase
   (arms x seeds of the small cnn, one short epoch each) runs through `ablate run` once per worker
   count, each worker with cores // workers training threads, in its own temporary storage. The
   figure is the steady-state rate: items completed after the first one, over the time between the
   first and the last completion (trial datetime_complete in storage), so start-up, the profile
   phase and the first item are excluded; they are shown apart. With `repeats`, the worker counts
   take turns and the best rate of each is kept (as above); the load average at the end of each
   run says how much else the machine was doing (our own workers count ~1 per busy core).
"""

from __future__ import annotations

import math
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Any

import optuna
import torch
import yaml
from torch import nn
from torch.utils.data import DataLoader, Dataset

from .augment import Normalize, to_unit_float
from .bench_sizes import (
    SCALING_BATCH_SIZE,
    SCALING_TEST_SIZE,
    SCALING_TRAIN_SIZE,
    bench_data_options,
    bench_train_size,
    check_bench_data,
)
from .datasets import Data, DataConfig, data_root, load_data
from .device import available_cores, device_name, resolve_device, synchronize
from .errors import AblateError
from .precision import autocast
from .recipe import Recipe, Runtime
from .switches import torch_settings
from .timing import load_average
from .train import make_optimizer, model_factory, train


@dataclass(frozen=True)
class BenchRow:
    backbone: str
    device: str
    images: int
    epochs: int
    batch_size: int
    ref_loop_sps: float  # samples/s, ref000-style loop
    engine_sps: float  # samples/s, ablate's engine, same augmentation
    ratio: float  # engine / ref000 loop
    bare_sps: float  # samples/s, bare loop, no augmentation
    engine_plain_sps: float  # samples/s, engine, no augmentation
    overhead_pct: float  # (bare / engine_plain - 1) * 100

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class _PILImages(Dataset):
    """What torchvision's CIFAR10 does per item: uint8 HWC array -> PIL image -> transform."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, transform: Any) -> None:
        self.images = images.permute(0, 2, 3, 1).numpy()  # NHWC uint8, as torchvision keeps it
        self.labels = labels.tolist()
        self.transform = transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        from PIL import Image

        arr = self.images[i]
        img = Image.fromarray(arr[:, :, 0] if arr.shape[2] == 1 else arr)
        return self.transform(img), self.labels[i]


def ref000_loop(model: nn.Module, data: Data, batch_size: int, epochs: int, device: torch.device) -> float:
    """Train like ref000 for `epochs` epochs; return training samples/s."""
    from torchvision import transforms

    cfg, meta = data.config, data.meta
    transform = transforms.Compose([
        transforms.RandomCrop(meta.input_size, padding=cfg.crop_padding),
        transforms.RandomHorizontalFlip(),
        transforms.ColorJitter(*cfg.jitter),
        transforms.RandomRotation(cfg.rotate_degrees),
        transforms.ToTensor(),
        transforms.Normalize(meta.mean, meta.std),
    ])
    loader = DataLoader(_PILImages(data.train.images.cpu(), data.train.labels.cpu(), transform),
                        batch_size=batch_size, shuffle=True, num_workers=2)
    model = model.to(device)
    criterion = nn.CrossEntropyLoss()
    optimizer = torch.optim.Adam(model.parameters(), lr=0.001)
    model.train()
    synchronize(device)
    t0 = time.perf_counter()
    for _ in range(epochs):
        running_loss, correct, total = 0.0, 0, 0
        for x, y in loader:
            x, y = x.to(device), y.to(device)
            optimizer.zero_grad()
            output = model(x)
            loss = criterion(output, y)
            loss.backward()
            optimizer.step()
            running_loss += loss.item()
            total += y.size(0)
            correct += output.max(1)[1].eq(y).sum().item()
    synchronize(device)
    return epochs * len(data.train) / (time.perf_counter() - t0)


def bare_loop(model: nn.Module, data: Data, recipe: Recipe, runtime: Runtime, device: torch.device, seed: int) -> float:
    """The least a loop over device tensors can do, with the engine's switches; returns samples/s."""
    torch.manual_seed(seed)
    gen = torch.Generator(device=device).manual_seed(seed)
    fmt, precision = runtime.memory_format, runtime.precision(device)
    model = model.to(device=device, memory_format=fmt)
    optimizer = make_optimizer(model, recipe, device)
    criterion = nn.CrossEntropyLoss()
    normalize = Normalize(data.meta.mean, data.meta.std, device)
    images, labels = data.train.images, data.train.labels
    n, bs = len(labels), recipe.batch_size
    model.train()
    synchronize(device)
    t0 = time.perf_counter()
    for _ in range(recipe.epochs):
        order = torch.randperm(n, generator=gen, device=device)
        for i in range(math.ceil(n / bs)):
            idx = order[i * bs:(i + 1) * bs]
            x = normalize(to_unit_float(images[idx])).contiguous(memory_format=fmt)
            with autocast(device, precision):
                loss = criterion(model(x), labels[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    synchronize(device)
    return recipe.epochs * n / (time.perf_counter() - t0)


def _warm_up(model: nn.Module, data: Data, device: torch.device, batch_size: int, runtime: Runtime) -> None:
    """One forward/backward in each loop's format and precision, so one-time kernel set-up (oneDNN
    primitives, cuDNN autotuning) is charged to no loop."""
    x = to_unit_float(data.train.images[:batch_size]).to(device)
    for memory_format, precision in ((torch.contiguous_format, "fp32"), (runtime.memory_format,
                                                                         runtime.precision(device))):
        m = model.to(device=device, memory_format=memory_format)
        with autocast(device, precision):
            loss = m(x.contiguous(memory_format=memory_format)).float().sum()
        loss.backward()
    model.zero_grad(set_to_none=True)


def bench_backbone(backbone: str, data: Data, *, epochs: int, batch_size: int, runtime: Runtime,
                   repeats: int = 1, seed: int = 0) -> BenchRow:
    device = resolve_device(runtime.device)
    build = model_factory(backbone)
    recipe = Recipe(epochs=epochs, batch_size=batch_size, scheduler="none")
    plain = replace(data, config=replace(data.config, augment=()))
    with torch_settings(runtime, device):
        torch.manual_seed(seed)
        _warm_up(build(data.meta), data, device, batch_size, runtime)
        ref_sps, engine_sps, bare_sps, plain_sps = [], [], [], []
        for _ in range(repeats):
            torch.manual_seed(seed)
            ref_sps.append(ref000_loop(build(data.meta), data, batch_size, epochs, device))
            engine_sps.append(train(build, data, recipe, seed=seed, runtime=runtime, eval_split="test").throughput)
            torch.manual_seed(seed)
            bare_sps.append(bare_loop(build(data.meta), data, recipe, runtime, device, seed))
            plain_sps.append(train(build, plain, recipe, seed=seed, runtime=runtime, eval_split="test").throughput)
        name = device_name(device)
    best_seed, best_engine, best_bare, best_plain = (max(v) for v in (ref_sps, engine_sps, bare_sps, plain_sps))
    return BenchRow(backbone, name, len(data.train), epochs, batch_size, best_seed, best_engine,
                    best_engine / best_seed, best_bare, best_plain, 100.0 * (best_bare / best_plain - 1.0))


def run_bench(backbones: Sequence[str] = ("cnn", "vgg16"), *, dataset: str = "synthetic",
              train_size: int | None = None, input_size: int | None = None, epochs: int = 1, batch_size: int = 64,
              runtime: Runtime = Runtime(), repeats: int = 1, root: str | Path | None = None,
              seed: int = 0) -> list[BenchRow]:
    """One BenchRow per backbone; data is loaded once per train size and shared by all loops."""
    device = resolve_device(runtime.device)
    rows = []
    for backbone in backbones:
        # checked again on the device resolved here (`ablate bench` checked every device 'auto' may be)
        config = check_bench_data(bench_data_options(dataset, bench_train_size(backbone, device.type, train_size),
                                                     input_size), batch_size,
                                  "use a smaller input_size, train_size or batch_size")
        data = load_data(config, root, device, fetch_missing=True)
        rows.append(bench_backbone(backbone, data, epochs=epochs, batch_size=batch_size, runtime=runtime,
                                   repeats=repeats, seed=seed))
    return rows


def bench_table(rows: Sequence[BenchRow]) -> tuple[list[str], list[list[Any]]]:
    headers = ["backbone", "images x epochs", "ref000 loop (img/s)", "ablate engine (img/s)", "ratio",
               "bare loop (img/s)", "engine, no aug (img/s)", "harness overhead"]
    body = [[r.backbone, f"{r.images} x {r.epochs}", f"{r.ref_loop_sps:.0f}", f"{r.engine_sps:.0f}",
             f"{r.ratio:.2f}x", f"{r.bare_sps:.0f}", f"{r.engine_plain_sps:.0f}", f"{r.overhead_pct:+.1f}%"]
            for r in rows]
    return headers, body



# ---------------------------------------------------------------------------------------------
# 4. scaling: one worker with every core against several workers sharing them
# ---------------------------------------------------------------------------------------------

SCALING_ATTENTION = ("none", "se", "eca", "cbam")
SCALING_SEEDS = 6  # x 4 arms = 24 final items


@dataclass(frozen=True)
class ScalingRow:
    workers: int
    threads: int  # training threads per worker
    items: int  # final items completed
    wall_s: float  # the whole `ablate run`: start-up, profile phase, every item
    first_item_s: float  # launch -> first completed item (start-up, profile phase, one item)
    median_item_s: float  # one item's own duration (trial start -> complete)
    items_per_min: float  # steady state: completions after the first, over first -> last completion
    load_1min: float | None  # the machine's 1-minute load average when the run ended

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def scaling_study(name: str, dataset: str, train_size: int, test_size: int, input_size: int | None = None,
                  attention: Sequence[str] = SCALING_ATTENTION, seeds: int = SCALING_SEEDS) -> dict[str, Any]:
    """A study document: len(attention) x seeds final items, one short epoch each, no tuning, a
    profile phase as short as the schema allows (final needs one; its time is not counted)."""
    data: dict[str, Any] = {"name": dataset, "train_size": train_size, "test_size": test_size, "val_fraction": 0.0,
                            "augment": ["crop", "flip"]}
    if input_size is not None:
        data["input_size"] = input_size
    return {
        "name": name,
        "description": "generated by `ablate bench --workers`: the same final phase at several worker counts",
        "dataset": data,
        "grid": {"backbones": ["cnn"], "attention": list(attention), "positions": ["after_relu"], "reductions": [16]},
        "seeds": list(range(seeds)),
        "recipe": {"optimizer": "adam", "lr": 0.001, "batch_size": SCALING_BATCH_SIZE, "epochs": 1,
                   "scheduler": "none"},
        "measure": {"batch_sizes": [1], "rounds": 1, "block_time": 0.01, "train_step": False, "threads": 1},
    }


def steady_rate(completed: Sequence[datetime]) -> float:
    """Items per minute after the first completion: (n - 1) / (last - first). Start-up and the first
    item (kernel set-up, first-touch costs) are before `first`, so they do not count."""
    times = sorted(completed)
    if len(times) < 2 or times[-1] <= times[0]:
        raise AblateError("the scaling benchmark needs at least two completed items to measure a rate.")
    return 60.0 * (len(times) - 1) / (times[-1] - times[0]).total_seconds()


def run_scaling_once(workers: int, threads: int, study_doc: dict[str, Any], folder: Path, root: Path) -> ScalingRow:
    """`ablate run` on the generated study in `folder` (its storage, checkpoints and log stay there)."""
    folder.mkdir(parents=True)
    study_path = folder / "study.yaml"
    study_path.write_text(yaml.safe_dump(study_doc, sort_keys=False))
    storage = f"sqlite:///{(folder / 'optuna.db').resolve()}"
    cmd = [sys.executable, "-m", "ablate", "run", str(study_path), "--storage", storage, "--workers", str(workers),
           "--threads", str(threads), "--data-dir", str(root.resolve()), "--quiet"]
    launched = datetime.now()
    t0 = time.perf_counter()
    with open(folder / "run.log", "w") as log:
        code = subprocess.run(cmd, cwd=folder, stdout=log, stderr=subprocess.STDOUT).returncode
    wall = time.perf_counter() - t0
    if code != 0:
        tail = (folder / "run.log").read_text().strip().splitlines()[-3:]
        raise AblateError(f"`ablate run --workers {workers}` failed (exit {code}): " + " / ".join(tail))
    final = optuna.load_study(study_name=f"{study_doc['name']}/final", storage=storage)
    done = [t for t in final.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
            if t.datetime_start is not None and t.datetime_complete is not None]
    completed = [t.datetime_complete for t in done]
    return ScalingRow(workers, threads, len(done), wall, (min(completed) - launched).total_seconds(),
                      statistics.median((t.datetime_complete - t.datetime_start).total_seconds() for t in done),
                      steady_rate(completed), load_average())


def run_scaling(workers: Sequence[int] = (1, 2), *, dataset: str = "fashion-mnist",
                train_size: int = SCALING_TRAIN_SIZE, test_size: int = SCALING_TEST_SIZE, input_size: int | None = None,
                root: str | Path | None = None, cores: int | None = None, repeats: int = 1) -> list[ScalingRow]:
    """One ScalingRow per worker count (the best of `repeats` turns), each worker with cores // workers
    threads (at least 1)."""
    cores = cores or available_cores()
    base = data_root(root)
    config = DataConfig(name=dataset, train_size=train_size, test_size=test_size, val_fraction=0.0,
                        input_size=input_size)
    load_data(config, base, fetch_missing=True)  # fails early when data is missing; warms the cache for every run alike
    best: dict[int, ScalingRow] = {}
    with tempfile.TemporaryDirectory(prefix="ablate-scaling-") as tmp:
        for turn in range(repeats):
            for n in workers:
                doc = scaling_study(f"bench-scaling-w{n}", dataset, train_size, test_size, input_size)
                row = run_scaling_once(n, max(1, cores // n), doc, Path(tmp) / f"w{n}-{turn}", base)
                if n not in best or row.items_per_min > best[n].items_per_min:
                    best[n] = row
    return [best[n] for n in workers]


def scaling_table(rows: Sequence[ScalingRow]) -> tuple[list[str], list[list[Any]]]:
    first = rows[0].items_per_min
    headers = ["workers x threads", "items", "steady items/min", f"vs {rows[0].workers} worker(s)",
               "median item (s)", "launch -> first item (s)", "wall (s)", "load at end"]
    body = [[f"{r.workers} x {r.threads}", r.items, f"{r.items_per_min:.1f}", f"{r.items_per_min / first:.2f}x",
             f"{r.median_item_s:.1f}", f"{r.first_item_s:.1f}", f"{r.wall_s:.0f}",
             "-" if r.load_1min is None else f"{r.load_1min:.1f}"] for r in rows]
    return headers, body
