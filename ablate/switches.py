"""torch's process-wide switches, set for the duration of a run or a measurement and put back afterwards.

Threads, cuDNN's autotuning and determinism flags, deterministic algorithms and cuBLAS's workspace
setting belong to the whole process, not to one model: training (`torch_settings`) and timing
(`torch_threads`, `cudnn_flags`) both change them, and both go through here, so each switch is set
and restored one way. Which ops warned because they have no deterministic kernel is recorded here too
(`record_nondeterministic_ops`).
"""

from __future__ import annotations

import contextlib
import os
import re
import warnings
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import torch

from .bounds import MAX_THREADS
from .config import is_integer
from .device import available_cores
from .errors import AblateError

if TYPE_CHECKING:
    from .recipe import Runtime

CUBLAS_WORKSPACE_CONFIG = ":4096:8"
NONDETERMINISTIC_ALERT = " does not have a deterministic implementation"


def set_cublas_workspace() -> None:
    """Set CUBLAS_WORKSPACE_CONFIG (deterministic cuBLAS) unless the user did: cuBLAS reads it once per
    process, when it is first used, so a deterministic run calls this before any CUDA work."""
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", CUBLAS_WORKSPACE_CONFIG)


def check_threads(threads: int | None) -> int:
    """None -> every available core; otherwise an integer from 1 to MAX_THREADS (more crash torch's pools)."""
    if threads is None:
        return available_cores()
    if not is_integer(threads) or not 1 <= threads <= MAX_THREADS:
        raise AblateError(f"threads must be an integer from 1 to {MAX_THREADS} (or None for every core), "
                          f"got {threads!r}.")
    return threads


@contextlib.contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """torch's intra-op thread count for the duration; the caller's afterwards."""
    previous = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


@contextlib.contextmanager
def cudnn_flags(benchmark: bool | None = None, deterministic: bool | None = None) -> Iterator[None]:
    """cuDNN's autotuning (`benchmark`) and determinism flags for the duration (None: left as they are);
    both put back afterwards."""
    previous = torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic
    try:
        if benchmark is not None:
            torch.backends.cudnn.benchmark = benchmark
        if deterministic is not None:
            torch.backends.cudnn.deterministic = deterministic
        yield
    finally:
        torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic = previous


@contextlib.contextmanager
def deterministic_algorithms() -> Iterator[None]:
    """torch.use_deterministic_algorithms(True, warn_only=True) for the duration (cuBLAS's workspace set
    first), the caller's setting afterwards."""
    previous = torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled()
    set_cublas_workspace()  # train() set it before any CUDA work; a no-op here unless called directly
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        yield
    finally:  # only undo what was done: the call imports torch._inductor lazily, which an interrupt can break
        torch.use_deterministic_algorithms(previous[0], warn_only=previous[1])


@contextlib.contextmanager
def torch_settings(runtime: Runtime, device: torch.device) -> Iterator[None]:
    """Apply the runtime's process-wide torch switches for one run, and put them back afterwards."""
    with contextlib.ExitStack() as stack:
        stack.enter_context(torch_threads(runtime.threads or available_cores()))
        if device.type == "cuda":
            bench = runtime.cudnn_benchmark if runtime.cudnn_benchmark is not None else not runtime.deterministic
            stack.enter_context(cudnn_flags(benchmark=bench, deterministic=runtime.deterministic))
        if runtime.deterministic:
            stack.enter_context(deterministic_algorithms())
        yield


def nondeterministic_op(message: str) -> str | None:
    """The op a torch determinism alert names ('X does not have a deterministic implementation, but
    you set ...'), or None for any other warning."""
    head, found, _ = message.partition(NONDETERMINISTIC_ALERT)
    return head.strip() if found and head.strip() else None


@contextlib.contextmanager
def record_nondeterministic_ops() -> Iterator[list[str]]:
    """Collect, in first-seen order, the ops that had no deterministic kernel while inside.

    With `use_deterministic_algorithms(True, warn_only=True)` torch warns, and carries on, when an op
    has no deterministic implementation (on CUDA: adaptive_max_pool2d_backward for CAM, CBAM and SE
    with max squeeze, _adaptive_avg_pool2d_backward, ...). Those alerts are turned into a list a run
    can store, so a report can say which arms could not be deterministic; every alert is seen (not
    only the first per place), and other warnings are shown as usual.
    """
    ops: list[str] = []
    with warnings.catch_warnings():  # restores the filters and showwarning on exit
        warnings.filterwarnings("always", message=".*" + re.escape(NONDETERMINISTIC_ALERT))
        previous = warnings.showwarning

        def show(message: Warning | str, category: type[Warning], filename: str, lineno: int,
                 file: Any = None, line: str | None = None) -> None:
            op = nondeterministic_op(str(message))
            if op is None:
                previous(message, category, filename, lineno, file, line)
            elif op not in ops:
                ops.append(op)

        warnings.showwarning = show
        yield ops
