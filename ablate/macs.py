"""What an arm costs in parameters and MACs, under two stated counting policies.

Counting policy matters for attention: fvcore's default op set counts zero for the elementwise work
(gating multiplies, sigmoids, channel means) that *is* most of what attention modules do, so SimAM
reads 0 MACs and SE reads little more than its two FCs. Every MAC column therefore names its policy,
and `ablate.columns.MAC_POLICY` holds the words a report prints next to it. Time is measured elsewhere
(`ablate.timing`): attention gates are memory-bound, and their latency cost exceeds their MAC share.
"""

from __future__ import annotations

import contextlib
import math
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import torch
from torch import nn

from .columns import DATA_MOVEMENT_OPS, ELEMENTWISE_OPS, INPLACE_OPS, POLICIES, REDUCTION_OPS, WINDOW_OPS, Policy
from .config import is_integer
from .errors import AblateError, unknown
from .models import attention_modules

with warnings.catch_warnings():  # fvcore's import warns about torch.jit.script; nothing to act on
    warnings.simplefilter("ignore", FutureWarning)
    from fvcore.nn import FlopCountAnalysis
    from fvcore.nn.jit_handles import get_shape



# ---------------------------------------------------------------------------------------------
# parameters


def count_params(model: nn.Module) -> int:
    """All parameters (trainable or not); buffers such as BN running stats are not parameters."""
    return sum(p.numel() for p in model.parameters())


def attention_paths(model: nn.Module) -> list[str]:
    """Module paths of the attention modules, outermost only so nothing is counted twice."""
    insertions = getattr(model, "insertions", None)
    if insertions is not None:
        return [ins.path for ins in insertions]
    paths: list[str] = []
    for path, _ in attention_modules(model):
        if not any(path.startswith(p + ".") for p in paths):
            paths.append(path)
    return paths


def attention_params(model: nn.Module) -> int:
    """Parameters that live inside the inserted attention modules."""
    modules = dict(model.named_modules())
    return sum(count_params(modules[path]) for path in attention_paths(model))


# ---------------------------------------------------------------------------------------------
# MACs


def _numel(shape: Sequence[int] | None) -> int:
    # None: not a tensor (a scalar argument); []: a 0-dim result, which in a trace is shape arithmetic
    return math.prod(shape) if shape else 0


def _per_output(inputs: list[Any], outputs: list[Any]) -> int:
    """Elementwise op: one MAC-equivalent per output element."""
    return _numel(get_shape(outputs[0]))


def _per_input(inputs: list[Any], outputs: list[Any]) -> int:
    """Reduction: one MAC-equivalent per input element read."""
    return _numel(get_shape(inputs[0]))


def _max_or_min(inputs: list[Any], outputs: list[Any]) -> int:
    """aten::max/min is a reduction (one tensor) or elementwise (two): count whichever is larger."""
    return max(_per_input(inputs, outputs), _per_output(inputs, outputs))


def _window_pool(inputs: list[Any], outputs: list[Any]) -> int:
    """max/avg_pool: every output element reads a kernel window."""
    out = _numel(get_shape(outputs[0]))
    try:
        kernel = inputs[1].toIValue()
        area = math.prod(kernel) if isinstance(kernel, (list, tuple)) else int(kernel)
    except Exception:  # kernel not a constant in the trace: fall back to reading the input once
        return _per_input(inputs, outputs)
    return out * area


def full_policy_handles() -> dict[str, Callable[[list[Any], list[Any]], int]]:
    """fvcore op handles for the ops its default set counts as zero (see MAC_POLICY['full'])."""
    handles: dict[str, Callable[[list[Any], list[Any]], int]] = {}
    for op in ELEMENTWISE_OPS:
        handles[f"aten::{op}"] = _per_output
        if op in INPLACE_OPS:
            handles[f"aten::{op}_"] = _per_output
    for op in REDUCTION_OPS:
        handles[f"aten::{op}"] = _per_input
    for op in WINDOW_OPS:
        handles[f"aten::{op}"] = _window_pool
    handles["aten::max"] = handles["aten::min"] = _max_or_min
    # fvcore already counts adaptive_avg_pool2d as 1 per input element; keep its handle as is
    handles.pop("aten::adaptive_avg_pool2d")
    return handles


def check_shape(input_shape: Sequence[int]) -> tuple[int, ...]:
    """One sample's shape as positive integers, e.g. (3, 32, 32); anything else is a user error."""
    shape = tuple(input_shape)
    if not shape or any(not is_integer(d) or d < 1 for d in shape):
        raise AblateError(f"input shape must be positive integers per image, e.g. (3, 32, 32); got {input_shape!r}.")
    return shape


@contextlib.contextmanager
def _eval_mode(model: nn.Module) -> Iterator[None]:
    """Eval for the duration (BN counts and dropout depend on it), then the caller's mode back."""
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


def count_macs(
    model: nn.Module, input_shape: Sequence[int], policy: Policy = "fvcore", *, batch_size: int = 1
) -> tuple[int, dict[str, int], dict[str, int]]:
    """MACs of one forward pass at `batch_size` (1: per image) under `policy` ('fvcore' | 'full').

    `input_shape` is one sample's shape, e.g. (3, 32, 32). Returns the total, fvcore's per-module counts
    keyed by module path ('' is the whole model), and the ops the full policy does not count either
    (op -> calls), so a column never undercounts silently (under 'fvcore' the ops it leaves at zero by
    design are not listed). Counted in eval mode on the eager model."""
    if policy not in POLICIES:
        raise unknown("MAC counting policy", policy, POLICIES)
    shape = check_shape(input_shape)
    param = next(iter(model.parameters()), None)
    device = param.device if param is not None else torch.device("cpu")
    dtype = param.dtype if param is not None and param.is_floating_point() else torch.float32
    x = torch.zeros((batch_size, *shape), device=device, dtype=dtype)
    with _eval_mode(model), torch.inference_mode(), warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit.trace deprecation
        warnings.simplefilter("ignore", DeprecationWarning)
        analysis = FlopCountAnalysis(model, x).unsupported_ops_warnings(False).uncalled_modules_warnings(False)
        if policy == "full":
            analysis.set_op_handle(**full_policy_handles())
        by_module = {name: int(count) for name, count in analysis.by_module().items()}
        skipped = analysis.unsupported_ops() if policy == "full" else {}
    free = {f"aten::{op}" for op in DATA_MOVEMENT_OPS}
    uncounted = {op: int(n) for op, n in sorted(skipped.items()) if op not in free}
    return by_module[""], by_module, uncounted


def format_uncounted(uncounted: Mapping[str, int]) -> str | None:
    """'aten::foo x2, aten::bar x1' for the cost column; None when every op was counted."""
    return ", ".join(f"{op} x{n}" for op, n in uncounted.items()) or None


def attention_macs(model: nn.Module, by_module: Mapping[str, int]) -> int:
    """Sum of `count_macs`'s per-module counts over the inserted attention modules."""
    return sum(by_module.get(path, 0) for path in attention_paths(model))
