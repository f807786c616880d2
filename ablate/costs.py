"""Cost rows: what every arm of one backbone costs, with one column schema for every reader.

A cost row holds the static costs (parameters, MACs under both policies, feature maps, bottleneck
widths) and the measured ones: inference latency per batch size and the training-step time, each
as a median over interleaved rounds with the overhead vs the same backbone's baseline and its CI
(`ablate.timing`). All arms of a backbone are timed together, because only arms timed in the same
rounds can be compared; the baseline is always timed as their reference, whether or not it is an
arm. The columns' names and meaning live in `ablate.columns`, which readers import instead of this.
"""

from __future__ import annotations

import copy
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from .arms import Arm
from .columns import POLICIES, POLICY_COLUMN, UNCOUNTED, Columns
from .errors import AblateError
from .macs import (
    attention_macs,
    attention_params,
    attention_paths,
    check_shape,
    count_macs,
    count_params,
    format_uncounted,
)
from .models import build_model
from .rounds import RoundSummary, faster_beyond_noise
from .timing import Setting, infer_block, peak_memory_mib, time_interleaved, train_block

# ---------------------------------------------------------------------------------------------
# static costs


def _join(values: Sequence[Any]) -> str | None:
    """'a,b,c' (None items as '-'); None for no items, so tables show n/a rather than an empty cell."""
    return ",".join("-" if v is None else str(v) for v in values) or None


def static_costs(model: nn.Module, input_shape: Sequence[int]) -> dict[str, Any]:
    """Parameters, MACs per image under both policies (whole model and attention only), maps, widths."""
    shape = check_shape(input_shape)
    row: dict[str, Any] = {"params": count_params(model), "attn_params": attention_params(model)}
    for policy in POLICIES:
        total, by_module, uncounted = count_macs(model, shape, policy)  # type: ignore[arg-type]
        row[f"macs_{POLICY_COLUMN[policy]}"] = total
        row[f"attn_macs_{POLICY_COLUMN[policy]}"] = attention_macs(model, by_module)
        if policy == "full":
            row[UNCOUNTED] = format_uncounted(uncounted)
    insertions = getattr(model, "insertions", None)
    row["insertions"] = len(attention_paths(model))
    row["feature_maps"] = _join([f"{i.height}x{i.width}" for i in insertions]) if insertions is not None else None
    row["hidden"] = _join([i.hidden for i in insertions]) if insertions is not None else None
    return row


def does_more_work(baseline: nn.Module, model: nn.Module) -> bool:
    """True when `model` holds every layer of `baseline` (same names and shapes) and more besides.

    Such an arm can never be faster than its baseline beyond timing noise: if it reads so, the
    timing is broken or the machine was disturbed, and the report says so.
    """
    base = {k: tuple(v.shape) for k, v in baseline.state_dict().items()}
    arm = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    extra_modules = len(list(model.modules())) > len(list(baseline.modules()))
    return all(arm.get(k) == s for k, s in base.items()) and (len(arm) > len(base) or extra_modules)


# ---------------------------------------------------------------------------------------------
# one backbone's arms, timed together


@dataclass(frozen=True)
class TrainStep:
    """How to time a training step: the recipe's batch size and its optimizer for a model."""

    batch_size: int
    make_optimizer: Callable[[nn.Module], torch.optim.Optimizer]


def _maker(model: nn.Module, kind: str, batch: int, shape: tuple[int, int, int], num_classes: int,
           setting: Setting, train_step: TrainStep | None) -> Callable[[], Callable[[], None]]:
    """A function that builds a fresh block (a new copy of `model`) for interleaved timing."""
    def make() -> Callable[[], None]:
        fresh = copy.deepcopy(model)
        if kind == "infer":
            return infer_block(fresh, batch, shape, setting)
        assert train_step is not None
        return train_block(fresh, batch, shape, num_classes, setting, train_step.make_optimizer)
    return make


def _timing_columns(metric: str, s: RoundSummary) -> dict[str, Any]:
    pct, low, high = Columns.overhead(metric)
    ci = s.overhead_ci_pct
    return {pct: s.overhead_pct, low: ci[0] if ci else None, high: ci[1] if ci else None}


def warning_text(arm_id: str, what: str, s: RoundSummary) -> str:
    low, high = s.overhead_ci_pct or (float("nan"), float("nan"))
    return (f"{arm_id}: {what} reads {s.overhead_pct:+.1f}% [{low:+.1f}, {high:+.1f}] vs its baseline although it "
            "does strictly more work (a superset of its layers); this run cannot tell why (host interference, or a "
            "memory-layout or allocation effect in this process): do not trust this figure")


def profile_backbone(
    arms: Sequence[Arm],
    input_shape: Sequence[int],
    *,
    num_classes: int = 10,
    setting: Setting = Setting(),
    batch_sizes: Sequence[int] = (1, 64),
    train_step: TrainStep | None = None,
    timing: bool = True,
    host: str | None = None,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Cost rows for `arms` (all of one backbone) and the raw per-round record for storage.

    The baseline (`none`) of the backbone is always built and timed as the reference; its row is
    returned first. Timing: for each batch size, then for the training step, all arms in
    interleaved rounds (see ablate.timing). Returns (rows, record) where record holds the per-round
    times (ratios follow from them) and the conditions, so a report can recompute every figure.
    """
    choices = {a.backbone for a in arms}
    if len(choices) != 1:
        raise AblateError(f"profile_backbone takes the arms of one backbone, got {sorted(c.label for c in choices)}.")
    c, h, w = image_shape(input_shape)
    baseline = Arm(next(iter(choices)), "none")
    ordered = [baseline] + [a for a in dict.fromkeys(arms) if not a.is_baseline]
    models = {a.id: build_model(**a.build_kwargs(), num_classes=num_classes, in_channels=c, input_size=h)
              for a in ordered}
    base_id, host = baseline.id, host or socket.gethostname()
    rows: dict[str, dict[str, Any]] = {}
    for a in ordered:
        rows[a.id] = {**a.factors(), **static_costs(models[a.id], (c, h, w)), "input": f"{c}x{h}x{w}",
                      "batch_sizes": list(batch_sizes) if timing else [], "device": setting.device,
                      "precision": setting.precision, "channels_last": setting.channels_last,
                      "threads": setting.threads if timing else None, "rounds": setting.rounds if timing else None,
                      "host": host, "timing_warnings": []}
    record: dict[str, Any] = {"baseline": base_id, "host": host, "metrics": {}}
    if not timing:
        return list(rows.values()), record

    superset = {a.id: does_more_work(models[base_id], models[a.id]) for a in ordered}
    metrics: list[tuple[str, int, str]] = [(Columns.latency_metric(b), b, "infer") for b in batch_sizes]
    if train_step is not None:
        metrics.append((Columns.TRAIN_STEP, train_step.batch_size, "train"))
    for metric, batch, kind in metrics:
        makers = {a.id: _maker(models[a.id], kind, batch, (c, h, w), num_classes, setting, train_step)
                  for a in ordered}
        summaries, conditions = time_interleaved(makers, setting, base_id)
        record["metrics"][metric] = {
            "batch_size": batch, "kind": kind, "conditions": conditions,
            "times_s": {k: s.times_s for k, s in summaries.items()},
        }
        for arm_id, s in summaries.items():
            row = rows[arm_id]
            if kind == "infer":
                row[Columns.latency(batch)] = s.median_s * 1e3
                row[Columns.latency_iqr(batch)] = s.iqr_s * 1e3
                row[Columns.throughput(batch)] = batch / s.median_s
                row[Columns.peak_mem(batch)] = peak_memory_mib(models[arm_id], batch, (c, h, w), setting)
            else:
                row[Columns.TRAIN_STEP_MS] = s.median_s * 1e3
                row[Columns.TRAIN_STEP_IQR] = s.iqr_s * 1e3
                row["train_step_batch"] = batch
            row.update(_timing_columns(metric, s))  # None for the baseline: it is the reference
            row[f"load_before_{metric}"] = conditions["load_before"]
            row[f"load_after_{metric}"] = conditions["load_after"]
            if superset[arm_id] and faster_beyond_noise(s):
                row["timing_warnings"].append(warning_text(arm_id, metric.replace("_", " "), s))
    return list(rows.values()), record


# ---------------------------------------------------------------------------------------------
# `ablate profile`'s input shape


def image_shape(input_shape: Sequence[int]) -> tuple[int, int, int]:
    """C x H x W of one square image; anything else is a user error."""
    shape = check_shape(input_shape)
    if len(shape) != 3:
        raise AblateError(f"input shape must be C x H x W (one image), got {'x'.join(map(str, shape))}.")
    c, h, w = shape
    if h != w:
        raise AblateError(f"the backbones take square inputs; got {h}x{w}.")
    return c, h, w
