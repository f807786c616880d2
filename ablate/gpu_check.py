"""`make gpu-check` (python -m ablate.gpu_check): about a minute that shows the GPU paths work here.

No CPU test can run a CUDA kernel, so this is where the GPU code meets a GPU: it profiles two arms
(cnn none and se) with CUDA-event timing, trains one short epoch of each in mixed precision (bf16,
or fp16 with loss scaling before Ampere) and channels_last on GPU-resident data, checks that peak
memory is reported and that the GPU trains faster than this machine's CPU on the same run, trains
one deterministic epoch of CBAM to list the ops that had no deterministic CUDA kernel, and prints
every figure. Without a CUDA device it says so and exits 0. tests/test_gpu.py runs the same code
under `pytest -m gpu`.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field

import torch

from .arms import arms_from_names
from .columns import Columns
from .costs import TrainStep, profile_backbone
from .datasets import Data, DataConfig, load_data
from .device import device_name, resolve_device
from .recipe import Recipe, Runtime
from .switches import set_cublas_workspace
from .timing import Setting
from .train import TrainResult, make_optimizer, model_factory, train

SKIPPED = "no CUDA device: gpu-check skipped"
TRAIN_SIZE = 10000  # synthetic 3x32x32 images: a few seconds on a CPU, well under one on a GPU
BATCH = 256


@dataclass
class GpuCheck:
    """The figures of one check, and what failed (empty when everything passed)."""

    device: str
    precision: str
    lines: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    gpu_samples_per_s: float = 0.0
    cpu_samples_per_s: float = 0.0
    peak_mem_mib: float | None = None
    nondeterministic_ops: list[str] | None = None


def _one_epoch(attention: str, data: Data, runtime: Runtime, batch: int) -> TrainResult:
    recipe = Recipe(epochs=1, batch_size=batch, scheduler="none")
    return train(model_factory("cnn", attention), data, recipe, seed=0, runtime=runtime, eval_split="test")


def run_gpu_check(where: str = "cuda", train_size: int = TRAIN_SIZE, batch: int = BATCH, rounds: int = 5) -> GpuCheck:
    """Profile, train and compare on `where` (the first CUDA device; 'cpu' only to test this code on a
    machine without one, where the GPU-only checks fail); the caller checks `failures`."""
    set_cublas_workspace()  # before the first CUDA call, for the deterministic epoch at the end
    device = resolve_device(where)
    precision = Runtime(device=where, amp=True).precision(device)
    check = GpuCheck(device_name(device), precision)
    say = check.lines.append

    # 1. two arms timed in interleaved rounds with CUDA events
    setting = Setting(device=str(device), precision=precision, channels_last=True, rounds=rounds, block_time=0.02)
    step = TrainStep(batch, lambda m: make_optimizer(m, Recipe(), device))
    rows, _ = profile_backbone(arms_from_names(["cnn"], ["none", "se"]), (3, 32, 32), setting=setting,
                               batch_sizes=(1, batch), train_step=step)
    say(f"profile on {check.device}, {precision}, channels_last (CUDA events, {setting.rounds} interleaved rounds):")
    for row in rows:
        overhead = row.get(Columns.overhead(Columns.TRAIN_STEP)[0])
        say(f"  {row['arm']:<28} latency b1 {row[Columns.latency(1)]:.3f} ms, b{batch} "
            f"{row[Columns.latency(batch)]:.3f} ms, train step {row[Columns.TRAIN_STEP_MS]:.3f} ms"
            + (f" ({overhead:+.1f}% vs none)" if overhead is not None else ""))
        if not row[Columns.latency(batch)] > 0:
            check.failures.append(f"{row['arm']}: no latency measured")

    # 2. one epoch on GPU-resident data in mixed precision, then the same run on the CPU
    data = load_data(DataConfig(name="synthetic", train_size=train_size, test_size=train_size // 5, val_fraction=0.1))
    gpu = _one_epoch("se", data, Runtime(device=where, amp=True, channels_last=True), batch)
    cpu = _one_epoch("se", data, Runtime(device="cpu"), batch)
    check.gpu_samples_per_s, check.cpu_samples_per_s = gpu.samples_per_s[0], cpu.samples_per_s[0]
    check.peak_mem_mib = gpu.peak_mem_mib
    say(f"one epoch of cnn/se, {len(data.train)} images, batch {batch}:")
    say(f"  {where} ({gpu.precision}, channels_last): {check.gpu_samples_per_s:,.0f} images/s, test acc "
        f"{gpu.final_acc:.1f}%, peak memory {gpu.peak_mem_mib or 0:.1f} MiB")
    say(f"  cpu ({cpu.precision}, {cpu.device}): {check.cpu_samples_per_s:,.0f} images/s, "
        f"test acc {cpu.final_acc:.1f}%")
    say(f"  gpu / cpu: {check.gpu_samples_per_s / check.cpu_samples_per_s:.1f}x")
    if gpu.precision != precision:
        check.failures.append(f"the GPU run trained in {gpu.precision}, expected {precision}")
    if not (gpu.peak_mem_mib or 0) > 0:
        check.failures.append("peak GPU memory was not reported")
    if not check.gpu_samples_per_s > check.cpu_samples_per_s:
        check.failures.append("the GPU did not train faster than the CPU")

    # 3. a deterministic epoch of CBAM: which ops had no deterministic CUDA kernel
    det = _one_epoch("cbam", data, Runtime(device=where, deterministic=True), batch)
    check.nondeterministic_ops = det.nondeterministic_ops
    say(f"deterministic cnn/cbam on {where}: ops without a deterministic kernel: {det.nondeterministic_ops or 'none'}")
    if det.nondeterministic_ops is None:
        check.failures.append("a deterministic run did not record its nondeterministic ops")
    return check


def main() -> int:
    if not torch.cuda.is_available():
        print(SKIPPED)
        return 0
    check = run_gpu_check()
    print("\n".join(check.lines))
    for failure in check.failures:
        print(f"FAILED: {failure}", file=sys.stderr)
    print("gpu-check passed" if not check.failures else f"gpu-check failed ({len(check.failures)} problem(s))")
    return 1 if check.failures else 0


if __name__ == "__main__":
    sys.exit(main())
