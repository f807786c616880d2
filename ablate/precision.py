"""Numeric precision: one vocabulary (fp32, bf16, fp16) for training, timing and the report.

Mixed precision means bf16 where the hardware runs it natively and fp16 (with loss scaling) where it
does not, so a run records the precision it actually used, not the one it asked for.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from typing import Any

import torch

from .errors import unknown
from .names import PRECISIONS

AUTOCAST_DTYPES: Mapping[str, torch.dtype] = {"bf16": torch.bfloat16, "fp16": torch.float16}


def check_precision(precision: str) -> str:
    """'fp32' | 'bf16' | 'fp16' ('none' is accepted as fp32, the CLI's old word)."""
    precision = "fp32" if precision in ("none", None) else precision
    if precision not in PRECISIONS:
        raise unknown("precision", precision, PRECISIONS)
    return precision


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager[Any]:
    """torch.autocast for bf16/fp16, nothing for fp32."""
    dtype = AUTOCAST_DTYPES.get(check_precision(precision))
    return torch.autocast(device.type, dtype=dtype) if dtype is not None else contextlib.nullcontext()


def bf16_native(device: torch.device) -> bool:
    """Whether `device` runs bf16 in hardware: CPUs (autocast), ROCm GPUs, CUDA compute capability >= 8.0.

    `torch.cuda.is_bf16_supported()` also says True on sm_75 (Turing) because bf16 can be emulated
    there, slowly: ask the capability of this very device instead (is_bf16_supported reads the
    current device, and including_emulation=False exists only in recent torch).
    """
    if device.type != "cuda":
        return True
    if torch.version.hip:
        return True
    return torch.cuda.get_device_capability(device) >= (8, 0)


def mixed_precision(device: torch.device) -> str:
    """The autocast precision for a run that asked for mixed precision: bf16 where the hardware has
    it, else fp16 (pre-Ampere CUDA GPUs have fp16 tensor cores; training then needs a GradScaler)."""
    return "bf16" if bf16_native(device) else "fp16"
