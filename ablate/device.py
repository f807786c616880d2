"""Which device to run on, checked against what this machine has, and its name for reports."""

from __future__ import annotations

import platform

import torch

from .errors import AblateError


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """'auto' (cuda when available), 'cpu', 'cuda' or 'cuda:N'; a clear error for what is not here."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise AblateError(f"unknown device {device!r}; allowed: auto, cpu, cuda, cuda:N.") from None
    if dev.type not in ("cpu", "cuda"):
        raise AblateError(f"device {device!r} is not supported; allowed: auto, cpu, cuda, cuda:N.")
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise AblateError(
                f"device {device!r} asked for, but CUDA is not available here (torch {torch.__version__}, "
                f"built for CUDA {torch.version.cuda or 'none'}); use --device cpu or auto."
            )
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise AblateError(f"device {device!r}: only {torch.cuda.device_count()} CUDA device(s) visible.")
    return dev


def device_name(device: torch.device) -> str:
    """A human name for reports: the GPU model, or the CPU model and thread count."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            model = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), model)
    except OSError:
        pass
    return f"cpu: {model}, {torch.get_num_threads()} threads"
