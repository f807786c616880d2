"""Memory estimated before a tensor sized by user input is allocated: refuse with the figures, not an OOM kill.

A batch of 100,000 images, an input of 3x100000x100000, or thirty idle workers do not fail
politely: the kernel's OOM killer ends the process (exit 137), or PyTorch raises after trying to
allocate terabytes. So every place that sizes a tensor from user input (plan's and the profile
phase's step timing, latency blocks, `--input`, `input_size`, `ablate train`) first adds up what it
will need and compares it with what the device has free.

Activations are counted without allocating anything of the user's size: the model runs on one image
of at most 64x64 pixels, every leaf module's output is summed, and the sums are scaled by the
input's pixel count (the "meta" device would need no scaling, but its first use imports
torch._dynamo: seconds that a refusal must not take). A training step keeps
each activation and its gradient (x2) plus weights, gradients and two Adam moments (x4); an
inference pass keeps about the two largest activations at a time. The figures are estimates
(workspace, allocator slack and functional ops inside modules are not counted), so only an input
that needs more than USABLE of the free memory is refused.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import AblateError

if TYPE_CHECKING:  # torch is imported where a model runs: the host-memory checks (workers) need none
    import torch
    from torch import nn

USABLE = 0.8  # share of the free memory an estimate may take
WORKER_BYTES = 790 * 2**20  # one idle `ablate run` worker process (imports, CUDA context on CPU hosts: measured)
FLOAT_BYTES = 4


def gib(n: float) -> str:
    return f"{n / 2**30:,.1f} GiB" if n >= 2**30 else f"{n / 2**20:,.0f} MiB"


def available_bytes(device: torch.device | str) -> int:
    """Free memory on `device`: CUDA's free memory, else the host's MemAvailable capped by a cgroup limit."""
    if not isinstance(device, str) and device.type == "cuda":
        import torch

        return int(torch.cuda.mem_get_info(device)[0])
    free = _meminfo_available()
    limit = _cgroup_free()
    return min(free, limit) if limit is not None else free


def _meminfo_available() -> int:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError):
        return 2**62  # unknown: nothing is refused


def _cgroup_free() -> int | None:
    """A cgroup v2 memory limit minus what the cgroup uses (a container's real ceiling), None when unlimited."""
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        used = int(Path("/sys/fs/cgroup/memory.current").read_text().strip())
    except (OSError, ValueError):
        return None
    return None if limit == "max" else max(0, int(limit) - used)


PROBE_SIZE = 64  # larger inputs are probed at this size and scaled by their pixel count


def activation_numels(build: Callable[[int], nn.Module], shape: tuple[int, int, int]) -> tuple[int, int, int]:
    """(sum of every leaf module's output, the largest one, parameter count) for ONE image of `shape`.

    `build(size)` makes the model for square inputs of `size`. An input up to PROBE_SIZE is run as it
    is (one image, no gradients: a few MB); a larger one is run at PROBE_SIZE and its activations are
    scaled by the ratio of pixel counts (convolutions, pools and attention maps grow with the image;
    a head sized for the larger input is not counted), so nothing of the user's size is allocated.
    """
    import torch

    side = min(shape[1], shape[2], PROBE_SIZE)
    scale = shape[1] * shape[2] / (side * side)
    model = build(side).eval()
    total, largest = 0, 0

    def hook(module: nn.Module, inputs: object, output: object) -> None:
        nonlocal total, largest
        if isinstance(output, torch.Tensor):
            total += output.numel()
            largest = max(largest, output.numel())

    handles = [m.register_forward_hook(hook) for m in model.modules() if not list(m.children())]
    try:
        with torch.no_grad():
            model(torch.zeros((1, shape[0], side, side)))
    finally:
        for h in handles:
            h.remove()
    return int(total * scale), int(largest * scale), sum(p.numel() for p in model.parameters())


def pass_bytes(numels: tuple[int, int, int], shape: tuple[int, int, int], batch: int, training: bool) -> dict:
    """What one pass at `batch` needs, by part (bytes), from `activation_numels`' (total, largest, params):
    weights (+ gradients and Adam moments when training), the input batch, activations."""
    total, largest, params = numels
    image = shape[0] * shape[1] * shape[2]
    activations = batch * (2 * total if training else 2 * largest)
    weights = "weights" + (", gradients, optimizer state" if training else "")
    return {weights: params * FLOAT_BYTES * (4 if training else 1),
            f"input batch of {batch}": batch * image * FLOAT_BYTES,
            "activations" + (" and their gradients" if training else ""): activations * FLOAT_BYTES}


def dataset_bytes(images: int, shape: tuple[int, int, int]) -> dict:
    """A dataset held as uint8 on the training device."""
    return {f"{images:,} images of {shape[0]}x{shape[1]}x{shape[2]} (uint8)": images * shape[0] * shape[1] * shape[2]}


def check_fits(parts: dict, device: torch.device | str, where: str, remedy: str) -> int:
    """Refuse (AblateError, with the figures) when the parts need more than USABLE of the free memory."""
    need = sum(parts.values())
    free = available_bytes(device)
    if need > USABLE * free:
        detail = "; ".join(f"{name}: {gib(n)}" for name, n in parts.items() if n)
        kind = device if isinstance(device, str) else device.type
        raise AblateError(f"{where}: needs about {gib(need)} of {kind} memory ({detail}), but {gib(free)} is "
                          f"free here (an estimate may take {USABLE:.0%} of it: {gib(USABLE * free)}); {remedy}.")
    return need


def check_host_batch(shape: tuple[int, int, int], batch: int, where: str, remedy: str,
                     held: dict | None = None) -> int:
    """The first bound, before torch is imported: one float input batch of `batch` images, beside `held` (a
    dataset, sized on the host before it moves), must fit in host memory on any device (batches are drawn
    on the host, then moved). The model-based estimate (`check_models_fit`) follows once torch is loaded."""
    batch_bytes = batch * shape[0] * shape[1] * shape[2] * FLOAT_BYTES
    label = f"input batch of {batch} x {'x'.join(map(str, shape))} (float32)"
    return check_fits({**(held or {}), label: batch_bytes}, "cpu", where, remedy)


def max_workers(free: int | None = None) -> int:
    """How many idle worker processes the host's free memory holds (at least 1)."""
    free = available_bytes("cpu") if free is None else free
    return max(1, int(USABLE * free // WORKER_BYTES))


def check_workers(count: int) -> None:
    """Refuse more local workers than memory holds: each costs ~790 MB before it trains anything."""
    fit = max_workers()
    if count > fit:
        raise AblateError(f"--workers {count}: each worker process takes about {gib(WORKER_BYTES)} before it trains "
                          f"anything, and {gib(available_bytes('cpu'))} is free here: at most {fit} "
                          "fit. Use fewer workers (or more machines sharing one database storage).")


def _check_passes(name: str, numels: tuple[int, int, int], shape: tuple[int, int, int], device: torch.device | str,
                  train_batch: int | None, infer_batches: tuple[int, ...], held: dict | None, where: str,
                  remedy: str) -> None:
    """One model's training step and inference passes beside `held`, each against the device's free memory."""
    passes = [(train_batch, True)] if train_batch else []
    for batch, training in [*passes, *((b, False) for b in infer_batches)]:
        check_fits({**(held or {}), **pass_bytes(numels, shape, batch, training)}, device,
                   f"{where} ({'training' if training else 'running'} {name} at batch {batch}, input "
                   f"{'x'.join(map(str, shape))})", remedy)


def check_models_fit(builds: dict[str, Callable[[int], nn.Module]], shape: tuple[int, int, int], device: torch.device,
                     *, train_batch: int | None, infer_batches: tuple[int, ...] = (), held: dict | None = None,
                     where: str, remedy: str) -> None:
    """Every model in `builds` (name -> builder for a square input size), trained at `train_batch` and/or run
    at each inference batch, beside `held` (e.g. the dataset on the device): refused with the figures when
    one cannot fit."""
    for name, build in builds.items():
        _check_passes(name, activation_numels(build, shape), shape, device, train_batch, infer_batches, held, where,
                      remedy)


# activation_numels' (total, largest) of each built-in backbone without attention, default head and bn, one
# class (more classes only add to the head's output) and any channel count (the input is no module's output),
# at the native sizes of the built-in datasets and at PROBE_SIZE; tests/test_memory_bounds.py recomputes them.
BASELINE_ACTIVATIONS: dict[str, dict[int, tuple[int, int]]] = {
    "cnn": {28: (144_961, 25_088), 32: (189_953, 32_768), 64: (755_201, 131_072)},
    "vgg16": {32: (861_697, 65_536), 64: (3_443_713, 262_144)},
    "resnet20": {28: (442_305, 12_544), 32: (577_665, 16_384), 64: (2_310_273, 65_536)},
    "resnet56": {28: (1_232_577, 12_544), 32: (1_609_857, 16_384), 64: (6_439_041, 65_536)},
    "resnet18": {28: (129_601, 12_544), 32: (153_601, 16_384), 64: (611_329, 65_536)},
    "resnet50": {28: (580_161, 12_544), 32: (657_921, 16_384), 64: (2_619_393, 65_536)},
}


def baseline_numels(backbone: str, shape: tuple[int, int, int]) -> tuple[int, int, int] | None:
    """What `activation_numels` gives for a backbone without attention, from the table (weights as 0): exact at a
    tabled size, scaled from the probe like activation_numels above it; None where the table cannot say."""
    sizes = BASELINE_ACTIVATIONS.get(backbone, {})
    side = min(shape[1], shape[2])
    if side >= PROBE_SIZE and PROBE_SIZE in sizes:
        scale = shape[1] * shape[2] / (PROBE_SIZE * PROBE_SIZE)
        total, largest = sizes[PROBE_SIZE]
        return int(total * scale), int(largest * scale), 0
    if shape[1] == shape[2] and side in sizes:
        return (*sizes[side], 0)
    return None


def check_baselines_fit(backbones: Iterable[str], shape: tuple[int, int, int], device: str, *,
                        train_batch: int | None, infer_batches: tuple[int, ...] = (), held: dict | None = None,
                        where: str, remedy: str) -> None:
    """`check_models_fit` before torch is imported, from BASELINE_ACTIVATIONS: each built-in backbone without
    attention and weights is a lower bound of every arm on it, so what it cannot fit no arm can. Applies
    only where the table knows the input size and where the memory is the host's (device cpu, or auto
    without a GPU driver); the full estimate follows after torch."""
    from .device import gpu_driver_present

    if not (device == "cpu" or (device == "auto" and not gpu_driver_present())):
        return
    for name in dict.fromkeys(backbones):
        numels = baseline_numels(name, shape)
        if numels is not None:
            _check_passes(f"{name}/none", numels, shape, "cpu", train_batch, infer_batches, held, where, remedy)
