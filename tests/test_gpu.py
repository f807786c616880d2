"""On a CUDA machine (`pytest -m gpu`, or `make gpu-check`): the GPU paths run and are faster.

The same code as `python -m ablate.gpu_check`: two arms profiled with CUDA events, one epoch in mixed
precision and channels_last on GPU-resident data against the same epoch on the CPU, peak memory
reported, and a deterministic epoch listing the ops that had no deterministic CUDA kernel.
"""

from __future__ import annotations

import pytest
import torch

from ablate.gpu_check import run_gpu_check
from ablate.precision import mixed_precision

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]


def test_gpu_check_passes_and_prints_its_figures() -> None:
    check = run_gpu_check()
    print("\n".join(check.lines))
    assert check.failures == []
    assert check.precision == mixed_precision(torch.device("cuda")) in ("bf16", "fp16")
    assert check.peak_mem_mib is not None and check.peak_mem_mib > 0
    assert check.gpu_samples_per_s > check.cpu_samples_per_s
    assert isinstance(check.nondeterministic_ops, list)
