"""Which device to run on, checked against what this machine has, its name for reports, and waiting for it.

torch is imported inside the functions that need it: the setting's check and the core count serve
refusals that must answer before torch is imported (see ablate.spec).
"""

from __future__ import annotations

import os
import platform
import re
from typing import TYPE_CHECKING, Any

from .config import ConfigError
from .errors import AblateError

if TYPE_CHECKING:
    import torch

DEVICE_SETTINGS = ("auto", "cpu", "cuda", "cuda:<index>")  # what a study file or option may name
_CUDA_INDEX = re.compile(r"cuda:[0-9]+")  # [0-9], not \d, which also matches non-ASCII digits


def check_device_setting(key: str, value: Any) -> str:
    """A device setting as written (whether this machine has it is resolve_device's question)."""
    if value in DEVICE_SETTINGS[:-1] or isinstance(value, str) and _CUDA_INDEX.fullmatch(value):
        return value
    raise ConfigError(key, f"unknown value {value!r}; allowed: {', '.join(DEVICE_SETTINGS)}.")


GPU_DEVICE_NODES = ("/dev/nvidiactl", "/dev/nvidia0", "/dev/kfd", "/dev/dxg")  # NVIDIA, ROCm, WSL's GPU


def _no_cuda(device: str, build: str) -> AblateError:
    return AblateError(f"device {device!r} asked for, but CUDA is not available here ({build}); use cpu or auto.")


def refuse_cuda_without_gpu(device: str, where: str) -> None:
    """A CUDA device setting on a machine with no GPU driver at all, refused without importing torch (seconds
    and hundreds of MB): torch.cuda cannot be available without one of GPU_DEVICE_NODES (or on macOS).
    Where one exists, resolve_device asks torch."""
    if device.startswith("cuda") and not gpu_driver_present():
        raise AblateError(f"{where}: {_no_cuda(device, 'no GPU driver on this machine')}")


def gpu_driver_present() -> bool:
    """Whether torch.cuda could be available here, known without importing torch (False: it cannot)."""
    return platform.system() != "Darwin" and any(os.path.exists(node) for node in GPU_DEVICE_NODES)


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """'auto' (cuda when available), 'cpu', 'cuda' or 'cuda:N'; a clear error for what is not here.

    A CUDA device comes back with its index ('cuda' -> 'cuda:0' on the current device): tensors
    report the indexed name, so only then does `tensor.device == device` say whether data is there.
    """
    import torch

    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise AblateError(f"unknown device {device!r}; allowed: auto, cpu, cuda, cuda:N.") from None
    if dev.type not in ("cpu", "cuda"):
        raise AblateError(f"device {device!r} is not supported; allowed: auto, cpu, cuda, cuda:N.")
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise _no_cuda(str(device), f"torch {torch.__version__}, built for CUDA {torch.version.cuda or 'none'}")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise AblateError(f"device {device!r}: only {torch.cuda.device_count()} CUDA device(s) visible.")
        if dev.index is None:
            dev = torch.device("cuda", torch.cuda.current_device())
    return dev


def synchronize(device: torch.device) -> None:
    """Wait for queued CUDA work (a no-op on CPU), so a clock read after it counts that work."""
    if device.type == "cuda":
        import torch

        torch.cuda.synchronize(device)


def available_cores() -> int:
    """The cores this process may run on (respects taskset/cgroup affinity where the OS reports it)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


class DataDoesNotFit(AblateError):
    """The dataset does not fit in the device's memory: a failure of the set-up, never of an arm."""


DATA_MEMORY_FRACTION = 0.8  # of the free device memory; the rest is for weights, activations and workspaces


def check_fits(nbytes: int, device: torch.device, what: str = "the dataset") -> None:
    """Raise DataDoesNotFit when `nbytes` would not fit on CUDA `device` with room left to train.

    Moving a dataset that does not fit fails with an out-of-memory error that looks like the model's;
    comparing with the free memory first (torch.cuda.mem_get_info) names the real cause. On CPU
    nothing is checked: host memory is the operating system's to manage.
    """
    if device.type != "cuda":
        return
    import torch

    free, total = torch.cuda.mem_get_info(device)
    if nbytes > DATA_MEMORY_FRACTION * free:
        gib = 2**30
        raise DataDoesNotFit(
            f"{what} needs {nbytes / gib:.2f} GiB on {device}, but only {free / gib:.2f} GiB of its {total / gib:.2f} "
            f"GiB are free and at most {DATA_MEMORY_FRACTION:.0%} of that goes to data (the rest is for the model "
            "and its activations): use a smaller train_size or input_size, free the GPU, or run on device cpu.")


def cpu_model() -> str:
    """The CPU's model name (/proc/cpuinfo on Linux, else what `platform` knows)."""
    try:
        with open("/proc/cpuinfo") as f:
            return next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")),
                        platform.processor() or platform.machine())
    except OSError:
        return platform.processor() or platform.machine()


def device_name(device: torch.device) -> str:
    """A human name for reports: the GPU model, or the CPU model and thread count."""
    import torch

    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu: {cpu_model()}, {torch.get_num_threads()} threads"
