"""Is the engine fast, and is its bookkeeping cheap? Three loops over identical data and models.

1. seed-000 loop: what the tutorial does. A torchvision-style Dataset that hands out PIL images,
   transforms.Compose(RandomCrop(padding=4), RandomHorizontalFlip, ColorJitter(0.2, 0.2, 0.2, 0.1),
   RandomRotation(15), ToTensor, Normalize), DataLoader(shuffle=True, num_workers=2), plain Adam,
   `loss.item()` and `.sum().item()` every step, fp32, contiguous NCHW.
2. ablate's engine: `train()` with the same augmentation, batch size, epochs and model.
   Ratio = engine samples/s / seed-loop samples/s.
3. Harness overhead: `train()` without augmentation against a bare loop over the same
   device tensors (slice, normalise, forward, backward, step: nothing else), with the same
   runtime switches. Overhead = bare samples/s / engine samples/s - 1.

Throughput counts training only (no evaluation), over whole epochs, synchronised on CUDA. Each
pair of loops is run alternately `repeats` times and the best of each is kept, because a shared
2-core machine is noisy.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from .augment import Normalize, to_unit_float
from .data import Data, DataConfig, load_data
from .device import device_name, resolve_device
from .timing import autocast, synchronize
from .train import Recipe, Runtime, make_optimizer, model_factory, torch_settings, train

# images per backbone when --train-size is not given: a few minutes in all on a 2-core CPU
DEFAULT_TRAIN_SIZE = {"cpu": {"cnn": 4096, "vgg16": 1280}, "cuda": {"cnn": 10000, "vgg16": 10000}}
BENCH_TEST_SIZE = 100


@dataclass(frozen=True)
class BenchRow:
    backbone: str
    device: str
    images: int
    epochs: int
    batch_size: int
    seed_loop_sps: float  # samples/s, seed-000 style loop
    engine_sps: float  # samples/s, ablate's engine, same augmentation
    ratio: float  # engine / seed loop
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


def seed000_loop(model: nn.Module, data: Data, batch_size: int, epochs: int, device: torch.device) -> float:
    """Train like seed 000 for `epochs` epochs; return training samples/s."""
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
        seed_sps, engine_sps, bare_sps, plain_sps = [], [], [], []
        for _ in range(repeats):
            torch.manual_seed(seed)
            seed_sps.append(seed000_loop(build(data.meta), data, batch_size, epochs, device))
            engine_sps.append(train(build, data, recipe, seed=seed, runtime=runtime, eval_split="test").throughput)
            torch.manual_seed(seed)
            bare_sps.append(bare_loop(build(data.meta), data, recipe, runtime, device, seed))
            plain_sps.append(train(build, plain, recipe, seed=seed, runtime=runtime, eval_split="test").throughput)
        name = device_name(device)
    best_seed, best_engine, best_bare, best_plain = (max(v) for v in (seed_sps, engine_sps, bare_sps, plain_sps))
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
        size = train_size or DEFAULT_TRAIN_SIZE[device.type].get(backbone, 1024)
        # a small test split: the engine evaluates after each epoch, and that time is not what we measure
        config = DataConfig(name=dataset, train_size=size, test_size=BENCH_TEST_SIZE, val_fraction=0.0,
                            input_size=input_size)
        data = load_data(config, root, device, fetch_missing=True)
        rows.append(bench_backbone(backbone, data, epochs=epochs, batch_size=batch_size, runtime=runtime,
                                   repeats=repeats, seed=seed))
    return rows


def bench_table(rows: Sequence[BenchRow]) -> tuple[list[str], list[list[Any]]]:
    headers = ["backbone", "images x epochs", "seed-000 loop (img/s)", "ablate engine (img/s)", "ratio",
               "bare loop (img/s)", "engine, no aug (img/s)", "harness overhead"]
    body = [[r.backbone, f"{r.images} x {r.epochs}", f"{r.seed_loop_sps:.0f}", f"{r.engine_sps:.0f}",
             f"{r.ratio:.2f}x", f"{r.bare_sps:.0f}", f"{r.engine_plain_sps:.0f}", f"{r.overhead_pct:+.1f}%"]
            for r in rows]
    return headers, body

