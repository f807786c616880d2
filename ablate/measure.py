"""What an arm costs: parameters, MACs under two stated counting policies, latency, memory.

Counting policy matters for attention: fvcore's default op set counts zero for the elementwise work
(gating multiplies, sigmoids, channel means) that *is* most of what attention modules do, so SimAM
reads 0 MACs and SE reads little more than its two FCs. Every MAC column therefore names its policy,
and `MAC_POLICY` holds the words a report prints next to it. Time is measured, not inferred from
MACs: attention gates are memory-bound, and their latency cost is larger than their MAC share.

Everything here is a plain function of its arguments (no module-level mutable state); the CLI
(`ablate profile`) and the study code share it.
"""

from __future__ import annotations

import contextlib
import logging
import math
import re
import time
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import pandas as pd
import torch
from torch import nn

from .arms import Arm, BackboneChoice, enumerate_arms, position_signature
from .attention import check_reduction, get_attention, resolve_knobs
from .device import resolve_device
from .errors import AblateError, unknown
from .models import attention_modules, build_model, get_backbone, resolve_stages
from .models.positions import check_position

with warnings.catch_warnings():  # fvcore's import warns about torch.jit.script; nothing to act on
    warnings.simplefilter("ignore", FutureWarning)
    from fvcore.nn import FlopCountAnalysis
    from fvcore.nn.jit_handles import get_shape

# torch.utils.benchmark imports cpp_extension, which logs "No CUDA runtime is found" on CPU machines
# that have a CUDA toolkit directory: noise for a profiler. Silence that one import, then restore.
_cpp_extension_log = logging.getLogger("torch.utils.cpp_extension")
_previous_level = _cpp_extension_log.level
_cpp_extension_log.setLevel(logging.ERROR)
try:
    from torch.utils import benchmark
finally:
    _cpp_extension_log.setLevel(_previous_level)

Policy = Literal["fvcore", "full"]
POLICIES: tuple[str, ...] = ("fvcore", "full")
# column-name suffix of each policy: macs_fvcore_default, macs_full, attn_macs_...
POLICY_COLUMN: Mapping[str, str] = {"fvcore": "fvcore_default", "full": "full"}
AMP_DTYPES: Mapping[str, torch.dtype] = {"bf16": torch.bfloat16, "fp16": torch.float16}

_ELEMENTWISE = (
    "add", "sub", "rsub", "mul", "div", "pow", "neg", "exp", "log", "sqrt", "rsqrt", "reciprocal", "abs",
    "square", "sigmoid", "tanh", "relu", "relu6", "hardtanh", "hardswish", "hardsigmoid", "silu", "gelu",
    "leaky_relu", "elu", "clamp", "clamp_min", "clamp_max", "maximum", "minimum", "where",
)  # fmt: skip
_INPLACE = {"add", "sub", "mul", "div", "pow", "neg", "exp", "sqrt", "rsqrt", "reciprocal", "sigmoid", "tanh",
            "relu", "hardtanh", "hardswish", "hardsigmoid", "silu", "leaky_relu", "elu", "clamp", "clamp_min"}  # fmt: skip
_REDUCTIONS = ("mean", "sum", "amax", "amin", "var", "std", "prod", "logsumexp", "softmax", "log_softmax",
               "adaptive_avg_pool1d", "adaptive_avg_pool2d", "adaptive_max_pool1d", "adaptive_max_pool2d")  # fmt: skip
_WINDOWS = ("max_pool1d", "max_pool2d", "avg_pool1d", "avg_pool2d")

MAC_POLICY: Mapping[str, str] = {
    "fvcore": (
        "macs_fvcore_default: fvcore 0.1.5 with its default op set. One multiply-add = 1 MAC for conv, "
        "linear, matmul/bmm/einsum (bias adds not counted); batch_norm 2 per element in eval (fvcore's "
        "rule), layer/group_norm 5 per element, adaptive_avg_pool2d 1 per input element. Every other op "
        "counts 0: elementwise mul/add/sigmoid, mean, amax, softmax, max_pool2d, relu."
    ),
    "full": (
        "macs_full: the fvcore counts above plus handles for the ops fvcore leaves at zero, in "
        "MAC-equivalents (one element touched = 1, whatever the op's arithmetic cost): elementwise ops "
        f"({', '.join(_ELEMENTWISE)}; in-place forms too) count 1 per output element; reductions "
        f"({', '.join(_REDUCTIONS + ('max', 'min'))}) count 1 per input element; windowed pools "
        f"({', '.join(_WINDOWS)}) count output elements x kernel area. 0-dim results (shape arithmetic "
        "traced by the JIT) count 0."
    ),
}
MAC_POLICY_TEXT = (
    "MACs are per image (batch 1), counted on the eager model in eval mode.\n"
    + "\n".join(f"- {text}" for text in MAC_POLICY.values())
    + "\nattn_macs_*: the same counts summed over the inserted attention modules only (fvcore by_module)."
)


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
    for op in _ELEMENTWISE:
        handles[f"aten::{op}"] = _per_output
        if op in _INPLACE:
            handles[f"aten::{op}_"] = _per_output
    for op in _REDUCTIONS:
        handles[f"aten::{op}"] = _per_input
    for op in _WINDOWS:
        handles[f"aten::{op}"] = _window_pool
    handles["aten::max"] = handles["aten::min"] = _max_or_min
    # fvcore already counts adaptive_avg_pool2d as 1 per input element; keep its handle as is
    handles.pop("aten::adaptive_avg_pool2d")
    return handles


def _check_shape(input_shape: Sequence[int]) -> tuple[int, ...]:
    shape = tuple(input_shape)
    if not shape or any(isinstance(d, bool) or not isinstance(d, int) or d < 1 for d in shape):
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
) -> tuple[int, dict[str, int]]:
    """MACs of one forward pass at `batch_size` (1: per image) under `policy` ('fvcore' | 'full').

    `input_shape` is one sample's shape, e.g. (3, 32, 32). Returns the total and fvcore's per-module
    counts keyed by module path ('' is the whole model). Counted in eval mode on the eager model.
    """
    if policy not in POLICIES:
        raise unknown("MAC counting policy", policy, POLICIES)
    shape = _check_shape(input_shape)
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
    return by_module[""], by_module


def attention_macs(model: nn.Module, by_module: Mapping[str, int]) -> int:
    """Sum of `count_macs`'s per-module counts over the inserted attention modules."""
    return sum(by_module.get(path, 0) for path in attention_paths(model))


# ---------------------------------------------------------------------------------------------
# time and memory


@dataclass(frozen=True)
class Timing:
    """One forward pass at one batch size: median and IQR over timed blocks (torch.utils.benchmark)."""

    batch_size: int
    median_ms: float
    iqr_ms: float
    throughput: float  # images per second at the median
    blocks: int  # timed blocks behind median and IQR (few blocks: IQR means little)


def check_amp(amp: str | None) -> torch.dtype | None:
    """None / 'none' (full precision), 'bf16' or 'fp16' -> the autocast dtype."""
    if amp is None or amp == "none":
        return None
    if amp not in AMP_DTYPES:
        raise unknown("amp mode", amp, ["none", *AMP_DTYPES])
    return AMP_DTYPES[amp]


def _autocast(device: torch.device, amp: str | None) -> contextlib.AbstractContextManager[Any]:
    dtype = check_amp(amp)
    return torch.autocast(device.type, dtype=dtype) if dtype is not None else contextlib.nullcontext()


@contextlib.contextmanager
def _cudnn_benchmark(device: torch.device) -> Iterator[None]:
    """cudnn.benchmark=True while timing fixed shapes on CUDA, restored after (it is process-wide)."""
    previous = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = device.type == "cuda" or previous
    try:
        yield
    finally:
        torch.backends.cudnn.benchmark = previous


def _check_threads(threads: int | None) -> int:
    """None -> torch's current intra-op thread count; otherwise a positive integer."""
    if threads is None:
        return torch.get_num_threads()
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise AblateError(f"threads must be a positive integer (or None for torch's default), got {threads!r}.")
    return threads


@contextlib.contextmanager
def _torch_threads(n: int) -> Iterator[None]:
    """Warm-up with the thread count the Timer will use; restore the caller's afterwards."""
    previous = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def _prepare(
    model: nn.Module, batch_size: int, input_shape: Sequence[int], device: torch.device, channels_last: bool
) -> torch.Tensor:
    """Eval mode on `device` (channels_last if asked) and a fixed random input batch for it."""
    model.eval().to(device)
    generator = torch.Generator().manual_seed(0)
    x = torch.randn((batch_size, *_check_shape(input_shape)), generator=generator).to(device)
    if channels_last:
        model.to(memory_format=torch.channels_last)  # only 4-D weights change; Conv1d/Linear stay
        x = x.contiguous(memory_format=torch.channels_last)
    return x


def time_model(
    model: nn.Module,
    batch_size: int,
    input_shape: Sequence[int],
    device: str | torch.device = "cpu",
    amp: str | None = None,
    channels_last: bool = False,
    min_run_time: float = 0.2,
    *,
    max_run_time: float | None = None,
    warmup: int = 2,
    threads: int | None = 1,
) -> Timing:
    """Forward-pass time at `batch_size` in eval mode under inference_mode (and autocast if `amp`).

    `threads` is torch's intra-op thread count while timing (None: torch's current setting). The
    default 1 is torch.utils.benchmark's own default: single-thread time reflects the work itself and
    is reproducible, while several OpenMP threads on a shared or virtual machine stall at every op's
    barrier (measured here: a 0.8 ms CNN forward read 100+ ms with 2 threads on a 2-vCPU VM).
    Moves `model` to `device`. After `warmup` untimed calls (cudnn autotuning, allocator, caches),
    Timer.adaptive_autorange times blocks of calls: at least 4 blocks and `min_run_time` seconds,
    until IQR/median < 10% or `max_run_time` (default 10 x min_run_time) runs out. It is
    blocked_autorange plus a floor on the block count, so IQR is never read off one block. On CUDA the
    timer synchronizes the device around each block, so queued kernels are counted.
    """
    dev = resolve_device(device)
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise AblateError(f"batch size must be a positive integer, got {batch_size!r}.")
    x = _prepare(model, batch_size, input_shape, dev, channels_last)
    autocast = _autocast(dev, amp)

    def step() -> None:
        with torch.inference_mode(), autocast:
            model(x)

    def clock() -> float:
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        return time.perf_counter()

    n_threads = _check_threads(threads)
    with _cudnn_benchmark(dev), _torch_threads(n_threads):
        for _ in range(warmup):
            step()
        timer = benchmark.Timer(stmt="step()", globals={"step": step}, timer=clock, num_threads=n_threads)
        m = timer.adaptive_autorange(
            threshold=0.1, min_run_time=min_run_time, max_run_time=max_run_time or 10 * min_run_time
        )
    return Timing(
        batch_size=batch_size,
        median_ms=m.median * 1e3,
        iqr_ms=m.iqr * 1e3,
        throughput=batch_size / m.median,
        blocks=len(m.times),
    )


def peak_memory_mib(
    model: nn.Module,
    batch_size: int,
    input_shape: Sequence[int],
    device: str | torch.device = "cpu",
    amp: str | None = None,
    channels_last: bool = False,
) -> float | None:
    """Peak memory PyTorch allocated during one forward pass (weights and input included), in MiB.

    CUDA only: the caching allocator reports it. On CPU there is no such counter: None, not a guess.
    """
    dev = resolve_device(device)
    if dev.type != "cuda":
        return None
    x = _prepare(model, batch_size, input_shape, dev, channels_last)
    with _cudnn_benchmark(dev), torch.inference_mode(), _autocast(dev, amp):
        model(x)  # cudnn autotuning allocates workspaces: keep them out of the measured pass
        torch.cuda.synchronize(dev)
        torch.cuda.reset_peak_memory_stats(dev)
        model(x)
        torch.cuda.synchronize(dev)
    return torch.cuda.max_memory_allocated(dev) / 2**20


# ---------------------------------------------------------------------------------------------
# rows


def default_batch_sizes(device: str | torch.device) -> tuple[int, ...]:
    """Batch 1 for latency and a large batch for throughput: modest on CPU, 256 on CUDA."""
    return (1, 256) if torch.device(device).type == "cuda" else (1, 64)


def default_min_run_time(device: str | torch.device) -> float:
    """Seconds of timed calls per batch size: short on CPU, longer on CUDA where calls are short."""
    return 0.5 if torch.device(device).type == "cuda" else 0.2


def _join(values: Iterable[Any]) -> str | None:
    """'a,b,c' (None items as '-'); None for no items, so tables show n/a rather than an empty cell."""
    return ",".join("-" if v is None else str(v) for v in values) or None


def profile_model(
    model: nn.Module,
    input_shape: Sequence[int],
    *,
    device: str | torch.device = "cpu",
    batch_sizes: Sequence[int] | None = None,
    amp: str | None = None,
    channels_last: bool = False,
    min_run_time: float | None = None,
    max_run_time: float | None = None,
    threads: int | None = 1,
    timing: bool = True,
) -> dict[str, Any]:
    """One flat row of costs for `model`: params, MACs under both policies, maps, time, memory.

    MACs are counted first, on the model as given (eager, eval mode); then the model is moved to
    `device` for timing. With `timing=False` only the static costs are computed.
    """
    shape = _check_shape(input_shape)
    dev = resolve_device(device)
    check_amp(amp)
    row: dict[str, Any] = {"params": count_params(model), "attn_params": attention_params(model)}
    for policy in POLICIES:
        total, by_module = count_macs(model, shape, policy)  # type: ignore[arg-type]
        row[f"macs_{POLICY_COLUMN[policy]}"] = total
        row[f"attn_macs_{POLICY_COLUMN[policy]}"] = attention_macs(model, by_module)
    insertions = getattr(model, "insertions", None)
    row["insertions"] = len(attention_paths(model))
    row["feature_maps"] = _join(f"{i.height}x{i.width}" for i in insertions) if insertions is not None else None
    row["hidden"] = _join(i.hidden for i in insertions) if insertions is not None else None
    if timing:
        sizes = tuple(batch_sizes) if batch_sizes else default_batch_sizes(dev)
        budget = min_run_time if min_run_time is not None else default_min_run_time(dev)
        for b in sizes:
            t = time_model(
                model, b, shape, dev, amp, channels_last, budget, max_run_time=max_run_time, threads=threads
            )
            row[f"latency_b{b}_ms_median"] = t.median_ms
            row[f"latency_b{b}_ms_iqr"] = t.iqr_ms
            row[f"throughput_b{b}_img_s"] = t.throughput
            row[f"timed_blocks_b{b}"] = t.blocks
            row[f"peak_mem_b{b}_mib"] = peak_memory_mib(model, b, shape, dev, amp, channels_last)
    row.update(
        {
            "input": "x".join(map(str, shape)),
            "device": str(dev),
            "amp": amp or "none",
            "channels_last": channels_last,
            "threads": _check_threads(threads) if timing else None,
        }
    )
    return row


def arm_from_kwargs(arm: Mapping[str, Any]) -> Arm:
    """build_model keyword arguments -> `ablate.arms.Arm`, with factors that do not apply dropped,
    so profile rows carry the same ids and factor columns as the study's tables."""
    attention = arm.get("attention", "none")
    cls = get_attention(attention)
    backbone = BackboneChoice(arm["backbone"], arm.get("head"), arm.get("bn", True))
    if attention == "none":
        return Arm(backbone, "none")
    defaults = resolve_knobs(attention, {})
    given = resolve_knobs(attention, {k: v for k, v in arm.items() if k in defaults})
    return Arm(
        backbone,
        attention,
        check_position(arm.get("position", "after_relu")),
        check_reduction(arm.get("reduction", 16)) if cls.uses_reduction else None,
        resolve_stages(arm.get("stages", "all"), len(get_backbone(backbone.name).blocks)),
        tuple((k, v) for k, v in given.items() if v != defaults[k]),
    )


def arm_label(arm: Mapping[str, Any]) -> str:
    """The arm's stable id, e.g. 'cnn/none', 'vgg16/se/after_relu/r16/s1-5' (see ablate.arms)."""
    return arm_from_kwargs(arm).id


def profile_arm(
    arm: Mapping[str, Any],
    input_shape: Sequence[int],
    *,
    num_classes: int = 10,
    device: str | torch.device = "cpu",
    batch_sizes: Sequence[int] | None = None,
    amp: str | None = None,
    channels_last: bool = False,
    min_run_time: float | None = None,
    max_run_time: float | None = None,
    threads: int | None = 1,
    timing: bool = True,
) -> dict[str, Any]:
    """Build arm `arm` (build_model's keyword arguments) for `input_shape` and profile it.

    The row starts with the arm's id and factor columns (`Arm.factors()`, None where a factor does
    not apply), then the columns of `profile_model`.
    """
    c, h, w = _image_shape(input_shape)
    for key, value in (("in_channels", c), ("input_size", h)):
        if key in arm and arm[key] != value:
            raise AblateError(f"arm {dict(arm)!r}: {key}={arm[key]!r} contradicts the input shape {c}x{h}x{w}.")
    row = arm_from_kwargs(arm).factors()
    model = build_model(**{"num_classes": num_classes, **arm, "in_channels": c, "input_size": h})
    row.update(
        profile_model(
            model,
            (c, h, w),
            device=device,
            batch_sizes=batch_sizes,
            amp=amp,
            channels_last=channels_last,
            min_run_time=min_run_time,
            max_run_time=max_run_time,
            threads=threads,
            timing=timing,
        )
    )
    return row


def _image_shape(input_shape: Sequence[int]) -> tuple[int, int, int]:
    shape = _check_shape(input_shape)
    if len(shape) != 3:
        raise AblateError(f"input shape must be C x H x W (one image), got {'x'.join(map(str, shape))}.")
    c, h, w = shape
    if h != w:
        raise AblateError(f"the backbones take square inputs; got {h}x{w}.")
    return c, h, w


_SHAPE_RE = re.compile(r"^\s*(\d+)\s*[xX]\s*(\d+)\s*[xX]\s*(\d+)\s*$")


def parse_input_shape(text: str) -> tuple[int, int, int]:
    """'3x32x32' -> (3, 32, 32): channels x height x width of one image."""
    match = _SHAPE_RE.match(text)
    if not match or any(int(g) < 1 for g in match.groups()):
        raise AblateError(f"input shape must look like CxHxW with positive integers, e.g. 3x32x32; got {text!r}.")
    c, h, w = (int(g) for g in match.groups())
    return c, h, w


# ---------------------------------------------------------------------------------------------
# the grid for `ablate profile`


def equivalent_positions(backbone: str, positions: Sequence[str]) -> dict[str, str]:
    """{dropped: kept} for positions that put modules in the same slots on `backbone` (same model)."""
    choice = BackboneChoice(backbone)
    seen: dict[tuple[Any, ...], str] = {}
    dropped: dict[str, str] = {}
    for position in dict.fromkeys(positions):
        signature = position_signature(choice, position)
        if signature in seen:
            dropped[position] = seen[signature]
        else:
            seen[signature] = position
    return dropped


def enumerate_profile_arms(
    backbones: Sequence[str],
    attentions: Sequence[str],
    positions: Sequence[str] = ("after_relu",),
    reductions: Sequence[int] = (16,),
    stages: str | Sequence[int] = "all",
) -> list[dict[str, Any]]:
    """The cartesian product of the lists, with factors that do not apply collapsed (no duplicates).

    `none` appears once per backbone with no position or ratio; modules without a reduction ratio
    appear once per position; positions that build the same model on a backbone are kept once
    (`ablate.arms.enumerate_arms` does the collapsing). Knobs stay at their defaults. Each arm is
    build_model's keyword arguments.
    """
    for name, values in (("backbone", backbones), ("attention", attentions), ("position", positions)):
        if not values:
            raise AblateError(f"at least one {name} is needed.")
    if not reductions:
        raise AblateError("at least one reduction ratio is needed.")
    for b in backbones:
        get_backbone(b)
    for a in attentions:
        get_attention(a)
    for p in positions:
        check_position(p)
    for r in reductions:
        check_reduction(r)
    choices = [BackboneChoice(b) for b in dict.fromkeys(backbones)]
    arms = enumerate_arms(choices, attentions, positions, reductions, [stages])
    return [_plain_kwargs(arm.build_kwargs()) for arm in arms]


def _plain_kwargs(kwargs: dict[str, Any]) -> dict[str, Any]:
    """Drop build options left at build_model's defaults (head None, bn True) for readable arms."""
    return {k: v for k, v in kwargs.items() if not (k == "head" and v is None or k == "bn" and v is True)}


# ---------------------------------------------------------------------------------------------
# tables


def add_baseline_deltas(df: pd.DataFrame, columns: Sequence[str] | None = None) -> pd.DataFrame:
    """Add `<col>_vs_none_pct`: % change over the same-backbone `none` row (when it was profiled)."""
    if columns is None:
        columns = [
            c
            for c in df.columns
            if c in ("params", "macs_fvcore_default", "macs_full")
            or (c.startswith("latency_b") and c.endswith("_ms_median"))
            or c.startswith("throughput_b")
        ]
    out = df.copy()
    base = df[df["attention"] == "none"].drop_duplicates("backbone").set_index("backbone")
    if base.empty:
        return out
    for col in columns:
        reference = pd.to_numeric(out["backbone"].map(base[col]), errors="coerce")
        delta = (pd.to_numeric(out[col], errors="coerce") / reference - 1.0) * 100.0
        out.insert(out.columns.get_loc(col) + 1, f"{col}_vs_none_pct", delta)
    return out


def rows_to_frame(rows: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """Rows (dicts from profile_arm) -> DataFrame; integer columns with gaps stay integers (Int64)."""
    df = pd.DataFrame(list(rows))
    for col in ("reduction",):
        if col in df.columns:
            df[col] = df[col].astype("Int64")
    return df
