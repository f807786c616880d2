"""What a study will cost before it runs: arms, trial counts, MACs x samples, a measured step time.

The estimate multiplies a measured training-step time (forward + backward + optimizer step on a
random batch of the recipe's batch size, on the study's device) by the number of steps every phase
will take. MACs alone mislead (attention gates are memory-bound), so the time is measured.
"""

from __future__ import annotations

import math
import statistics
import time
from typing import Any

import pandas as pd
import torch

from .data import dataset_info
from .measure import count_macs, count_params
from .models import build_model
from .device import resolve_device
from .spec import Study
from .study import tuning_groups


def train_step_seconds(model: torch.nn.Module, batch: int, shape: tuple[int, int, int], device: torch.device,
                       steps: int = 3) -> float:
    """Median of `steps` timed steps after two warm-up steps (oneDNN/cuDNN pick kernels on the first)."""
    model = model.to(device).train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    x = torch.randn(batch, *shape, device=device)
    y = torch.randint(0, 2, (batch,), device=device)

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()

    times = []
    for _ in range(2 + steps):
        start = time.perf_counter()
        step()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times[2:])


def plan_frame(study: Study, timing: bool = True) -> pd.DataFrame:
    info = dataset_info(study.dataset)
    shape = (info.in_channels, info.input_size, info.input_size)
    device = resolve_device(study.runtime.device)
    rows: list[dict[str, Any]] = []
    for arm in study.arms:
        model = build_model(**arm.build_kwargs(), num_classes=info.num_classes, in_channels=shape[0],
                            input_size=shape[1])
        macs, _ = count_macs(model, shape, "full")
        row = {**arm.factors(), "params": count_params(model), "macs_full": macs,
               "hidden": ",".join(str(i.hidden) for i in model.insertions if i.hidden is not None) or None,
               "maps": ",".join(f"{i.height}x{i.width}" for i in model.insertions) or None}
        if timing:
            row["step_ms"] = 1000 * train_step_seconds(model, study.recipe.batch_size, shape, device)
        rows.append(row)
    frame = pd.DataFrame(rows).astype({"reduction": "Int64"})
    return frame.drop(columns=["knobs"] if all(r["knobs"] is None for r in rows) else [])


def plan_summary(study: Study, frame: pd.DataFrame) -> list[str]:
    info = dataset_info(study.dataset)
    n_arms, n_seeds = len(study.arms), len(study.seeds)
    train_n = info.train_count
    steps_per_epoch = math.ceil(train_n / study.recipe.batch_size)
    t = study.tuning
    groups = len(tuning_groups(study))
    tune_trials = groups * t.n_trials if t.enabled else 0
    lines = [
        f"arms: {n_arms}; seeds: {n_seeds}; dataset: {study.dataset.name} ({train_n} train images per epoch, "
        f"{info.in_channels}x{info.input_size}x{info.input_size}, {info.num_classes} classes)",
        f"trials: {n_arms} profile + {tune_trials} tuning ({groups} group(s) x {t.n_trials}, scope {t.scope}, "
        f"{t.epochs} epoch(s) each) + {n_arms * n_seeds} final ({study.recipe.epochs} epochs each)"
        if t.enabled else f"trials: {n_arms} profile + 0 tuning (off) + {n_arms * n_seeds} final "
        f"({study.recipe.epochs} epochs each)",
    ]
    train_macs = 3 * frame["macs_full"] * train_n * study.recipe.epochs * n_seeds  # fwd + ~2x for backward
    lines.append(f"training compute (final phase): {train_macs.sum() / 1e12:.3g} TMACs (3 x forward MACs x samples x epochs x seeds)")
    if "step_ms" in frame:
        final_s = (frame["step_ms"] / 1000 * steps_per_epoch * study.recipe.epochs * n_seeds).sum()
        tune_s = 0.0
        if t.enabled:
            mean_step = frame["step_ms"].mean() / 1000
            tune_s = tune_trials * mean_step * steps_per_epoch * t.epochs
        lines.append(
            f"estimated time on {resolve_device(study.runtime.device)}: final {final_s / 60:.1f} min + tuning "
            f"{tune_s / 60:.1f} min = {(final_s + tune_s) / 3600:.2f} h for one worker (measured step times; "
            "evaluation and data time not included)"
        )
    return lines
