"""The cost table's schema: column names, what each MAC policy counts, how overheads print.

Everything that reads cost rows (the report, `ablate profile`'s table, the dashboard) needs these and
nothing that measures: `ablate.costs`, `ablate.macs` and `ablate.timing` fill the columns, this
module names and explains them. Column names are built here and nowhere else, so nobody parses
them back with a regex.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import pandas as pd

# the MAC counting policies: which ops each counts (ablate.macs implements them)
Policy = Literal["fvcore", "full"]
POLICIES: tuple[str, ...] = ("fvcore", "full")
# column-name suffix of each policy: macs_fvcore_default, macs_full, attn_macs_...
POLICY_COLUMN: Mapping[str, str] = {"fvcore": "fvcore_default", "full": "full"}

ELEMENTWISE_OPS = (
    "add", "sub", "rsub", "mul", "div", "pow", "neg", "exp", "log", "sqrt", "rsqrt", "reciprocal", "abs",
    "square", "sigmoid", "tanh", "relu", "relu6", "hardtanh", "hardswish", "hardsigmoid", "silu", "gelu",
    "leaky_relu", "elu", "clamp", "clamp_min", "clamp_max", "maximum", "minimum", "where",
)  # fmt: skip
INPLACE_OPS = {"add", "sub", "mul", "div", "pow", "neg", "exp", "sqrt", "rsqrt", "reciprocal", "sigmoid", "tanh",
            "relu", "hardtanh", "hardswish", "hardsigmoid", "silu", "leaky_relu", "elu", "clamp",
            "clamp_min"}
REDUCTION_OPS = ("mean", "sum", "amax", "amin", "var", "std", "prod", "logsumexp", "softmax", "log_softmax",
               "adaptive_avg_pool1d", "adaptive_avg_pool2d", "adaptive_max_pool1d", "adaptive_max_pool2d")  # fmt: skip
WINDOW_OPS = ("max_pool1d", "max_pool2d", "avg_pool1d", "avg_pool2d")
# data movement without arithmetic that fvcore does not already ignore: 0 by design, never flagged
DATA_MOVEMENT_OPS = ("pad", "repeat", "repeat_interleave", "tile", "flip", "clone", "index_select", "expand_as",
                     "movedim", "swapaxes", "unflatten")
UNCOUNTED = "macs_uncounted"  # ops that no policy counts, with their call counts: the MAC columns undercount

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
        f"({', '.join(ELEMENTWISE_OPS)}; in-place forms too) count 1 per output element; reductions "
        f"({', '.join(REDUCTION_OPS + ('max', 'min'))}) count 1 per input element; windowed pools "
        f"({', '.join(WINDOW_OPS)}) count output elements x kernel area. 0-dim results (shape arithmetic "
        "traced by the JIT) count 0."
    ),
}
MAC_POLICY_TEXT = (
    "MACs are per image (batch 1), counted on the eager model in eval mode.\n"
    + "\n".join(f"- {text}" for text in MAC_POLICY.values())
    + "\nattn_macs_*: the same counts summed over the inserted attention modules only (fvcore by_module)."
    + f"\n{UNCOUNTED}: ops in the model that neither policy counts (each op with its number of calls), e.g. "
    "a plugin module's custom op; both MAC columns undercount such an arm. Data movement counts 0 by design "
    f"and is not listed ({', '.join(DATA_MOVEMENT_OPS)}, and the view/slice/cat ops fvcore ignores)."
)


class Columns:
    """The names of every measured cost column; one place, so nobody parses them back."""

    @staticmethod
    def latency(b: int) -> str:
        return f"latency_b{b}_ms_median"

    @staticmethod
    def latency_iqr(b: int) -> str:
        return f"latency_b{b}_ms_iqr"

    @staticmethod
    def throughput(b: int) -> str:
        return f"throughput_b{b}_img_s"

    @staticmethod
    def peak_mem(b: int) -> str:
        return f"peak_mem_b{b}_mib"

    @staticmethod
    def overhead(metric: str) -> tuple[str, str, str]:
        """(overhead %, CI low %, CI high %) for a metric prefix such as 'latency_b1' or 'train_step'."""
        return f"{metric}_overhead_pct", f"{metric}_overhead_ci_low_pct", f"{metric}_overhead_ci_high_pct"

    @staticmethod
    def latency_metric(b: int) -> str:
        return f"latency_b{b}"

    TRAIN_STEP = "train_step"
    TRAIN_STEP_MS = "train_step_ms_median"
    TRAIN_STEP_IQR = "train_step_ms_iqr"


def _finite(value: Any) -> bool:
    try:
        return value is not None and math.isfinite(float(value))
    except (TypeError, ValueError):
        return False


def within_noise(low: Any, high: Any) -> bool:
    """True when an overhead's 95% CI covers zero: the arm is within timing noise of its baseline."""
    return _finite(low) and _finite(high) and float(low) <= 0 <= float(high)


def overhead_text(pct: Any, low: Any, high: Any) -> str:
    """'+26.1% [+19.0, +29.3]': an overhead with its 95% CI; '~' in front when the CI covers zero
    (within timing noise); '-' where there is none (the baseline, or nothing timed)."""
    if not _finite(pct):
        return "-"
    if not (_finite(low) and _finite(high)):
        return f"{float(pct):+.1f}%"
    noise = "~" if within_noise(low, high) else ""
    return f"{noise}{float(pct):+.1f}% [{float(low):+.1f}, {float(high):+.1f}]"


def batch_sizes_of(row: Mapping[str, Any] | pd.DataFrame) -> tuple[int, ...]:
    """The batch sizes a row (or frame of rows) was timed at, from its `batch_sizes` field."""
    if isinstance(row, pd.DataFrame):
        found = {int(b) for value in row.get("batch_sizes", pd.Series(dtype=object)).dropna() for b in value}
        return tuple(sorted(found))
    return tuple(sorted(int(b) for b in row.get("batch_sizes") or ()))


def add_baseline_deltas(df: pd.DataFrame, columns: Sequence[str]) -> pd.DataFrame:
    """Add `<col>_vs_none_pct`: % change over the same-backbone `none` row, for static columns.

    Measured times get their overhead from per-round ratios instead (Columns.overhead); a ratio of
    two medians taken in different windows is exactly what this module exists to avoid.
    """
    out = df.copy()
    base = df[df["attention"] == "none"].drop_duplicates("backbone").set_index("backbone")
    for col in columns:
        if col not in df or base.empty:
            out[f"{col}_vs_none_pct"] = float("nan")
            continue
        reference = pd.to_numeric(out["backbone"].map(base[col]), errors="coerce")
        delta = (pd.to_numeric(out[col], errors="coerce") / reference - 1.0) * 100.0
        out.insert(out.columns.get_loc(col) + 1, f"{col}_vs_none_pct", delta)
    return out


def rows_to_frame(rows: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """Rows (dicts from profile_backbone) -> DataFrame; integer columns with gaps stay integers (Int64)."""
    df = pd.DataFrame(list(rows))
    if "reduction" in df.columns:
        df["reduction"] = df["reduction"].astype("Int64")
    return df
