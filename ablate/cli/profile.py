"""`ablate profile`: params, MACs, feature maps, latency and memory of every arm, without training.

The arms are the cartesian product of the lists with factors that do not apply collapsed (see
`ablate.arms.arms_from_names`). `--format table` adds % over the same-backbone `none`
row and prints the MAC counting policy under the table; `--format csv` and `--json FILE` carry
every column.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tabulate import tabulate
from tqdm import tqdm

from ..bounds import MAX_PROFILE_S, MAX_TIMED_BLOCKS, duration, timing_seconds
from ..device import available_cores, refuse_cuda_without_gpu, resolve_device
from ..errors import AblateError
from ..files import atomic_write, check_output_file, first_line_matches
from ..memory import check_baselines_fit, check_host_batch
from ..names import BUILTIN_ATTENTION
from . import (
    add_backbone,
    add_device,
    add_json,
    add_threads,
    check_json,
    csv_list,
    finite_float,
    int_list,
    integer,
    stages,
    write_json,
)

if TYPE_CHECKING:
    import torch

FORMATS = ("table", "csv")
PRECISIONS = ("fp32", "bf16", "fp16", "none")  # none: fp32, the old word


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "profile",
        help="params, MACs, latency and memory of every arm (no training)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_backbone(p, default=["cnn"])
    p.add_argument(
        "--attention",
        type=csv_list,
        default=list(BUILTIN_ATTENTION),
        help="comma-separated attention types or import paths pkg.mod:Class (default: all built-in)",
    )
    p.add_argument("--position", type=csv_list, default=None,
                   help="comma-separated insertion positions (default: each backbone's own, after_relu on the conv "
                        "backbones, standard on the ResNets); each backbone takes the ones it has")
    p.add_argument("--reduction", type=int_list, default=[16], help="comma-separated reduction ratios (default: 16)")
    p.add_argument("--stages", type=stages, default="all",
                   help="'all' or comma-separated 1-based block indexes (default: all)")
    p.add_argument("--input", default="3x32x32", metavar="CxHxW", help="one image's shape (default: 3x32x32)")
    p.add_argument("--num-classes", type=integer, default=10, help="classifier outputs (default: 10)")
    add_device(p)
    p.add_argument(
        "--batch-sizes",
        type=int_list,
        default=None,
        help="batch sizes to time (default: 1,64 on cpu; 1,256 on cuda)",
    )
    p.add_argument("--precision", choices=PRECISIONS, default="fp32",
                   help="numeric precision while timing (autocast for bf16/fp16; default: fp32)")
    p.add_argument("--channels-last", action="store_true", help="time with channels_last model and input")
    p.add_argument("--rounds", type=integer, default=10,
                   help="interleaved rounds: every arm of a backbone timed once per round, in a fresh random order "
                        "(default: 10)")
    p.add_argument("--block-time", "--min-run-time", dest="block_time", type=finite_float, default=None,
                   metavar="SECONDS",
                   help="seconds per timed block (default: 0.05 on cpu, 0.02 on cuda)")
    p.add_argument("--blocks", type=integer, default=3,
                   help="timed blocks per arm per round; the fastest counts (default: 3)")
    p.add_argument("--train-batch", type=integer, default=64, metavar="B",
                   help="batch size of the timed training step (forward + backward + Adam step); 0 skips it "
                        "(default: 64)")
    p.add_argument("--cuda-graph", action="store_true",
                   help="CUDA only: time the forward pass replayed from captured CUDA graphs (launch overhead out)")
    add_threads(p, default=1, default_text="1, as the study file's measure.threads (timings at one thread are "
                                           "reproducible on shared machines)")
    p.add_argument("--no-timing", action="store_true", help="params and MACs only (fast)")
    p.add_argument("--format", choices=FORMATS, default="table",
                   help="printed format: table (for people) or csv (every column); default: table")
    p.add_argument("--out", metavar="FILE", default=None, help="write the --format output to FILE instead of stdout")
    add_json(p)
    p.set_defaults(func=run)


_SHAPE_RE = re.compile(r"\s*(\d+)\s*[xX]\s*(\d+)\s*[xX]\s*(\d+)\s*")


def parse_input_shape(text: str) -> tuple[int, int, int]:
    """'3x32x32' -> (3, 32, 32): channels x height x width of one image."""
    match = _SHAPE_RE.fullmatch(text)
    if not match or any(int(g) < 1 for g in match.groups()):
        raise AblateError(f"--input must look like CxHxW with positive integers, e.g. 3x32x32; got {text!r}.")
    c, h, w = (int(g) for g in match.groups())
    return c, h, w


# a file `ablate profile --out` wrote: its csv header, or its table's, starts with these columns
PROFILE_TABLE = first_line_matches(r"arm,backbone,attention,|\| arm +\| params +\|")


def batch_sizes(args: argparse.Namespace, device_type: str) -> tuple[int, ...]:
    """--batch-sizes, else the default of the device type: 1 and 256 on CUDA, 1 and 64 on CPU."""
    return tuple(args.batch_sizes or ([1, 256] if device_type == "cuda" else [1, 64]))


def _check_options(args: argparse.Namespace) -> tuple[int, int, int]:
    """Every option checked before torch is imported (outputs, counts, the input shape and a first memory
    bound); returns the input shape."""
    check_json(args.json)  # both outputs: new files or ablate's own, checked before any work (and before torch)
    if args.out:
        check_output_file(Path(args.out), "--out", "table file", PROFILE_TABLE)
    if args.block_time is not None and not (args.block_time > 0 and args.block_time <= 60):
        raise AblateError(f"--block-time must be a number of seconds in (0, 60], got {args.block_time}.")
    if args.batch_sizes is not None and (not args.batch_sizes or min(args.batch_sizes) < 1):
        raise AblateError(f"--batch-sizes must be positive integers, got {args.batch_sizes}.")
    for name, value, low in (("--num-classes", args.num_classes, 1),
                             ("--rounds", args.rounds, 1), ("--train-batch", args.train_batch, 0),
                             ("--blocks", args.blocks, 1)):
        if value < low:
            raise AblateError(f"{name} must be an integer >= {low}, got {value}.")
    if args.rounds * args.blocks > MAX_TIMED_BLOCKS:
        total = args.rounds * args.blocks
        raise AblateError(f"--rounds {args.rounds} x --blocks {args.blocks} = {total:,} timed blocks "
                          f"per arm and batch size; at most {MAX_TIMED_BLOCKS:,} (hours of timing already): use fewer.")
    refuse_cuda_without_gpu(args.device, "--device")
    shape = parse_input_shape(args.input)
    remedy = "use a smaller --input, --batch-sizes or --train-batch"
    check_host_batch(shape, max([*(args.batch_sizes or [1]), args.train_batch or 1]), "the profile", remedy)
    check_baselines_fit(args.backbone, shape, args.device, train_batch=args.train_batch or None,
                        infer_batches=batch_sizes(args, "cpu"), where="the profile", remedy=remedy)
    return shape


def check_timing_time(arms: int, sizes: list[int], train_step: bool, rounds: int, blocks: int,
                      block_time: float) -> str:
    """The timed blocks' total, said before timing starts (a lower bound: warm-up, calibration and building
    models come on top); refused over MAX_PROFILE_S, since a profile that stops keeps nothing."""
    timings = len(sizes) + train_step
    total = timing_seconds(arms, timings, rounds, blocks, block_time)
    text = (f"{arms} arm(s) x {timings} timed setting(s) ({len(sizes)} batch size(s)"
            f"{' + the training step' if train_step else ''}) x {rounds:,} round(s) x {blocks} block(s) x "
            f"{block_time:g} s = {duration(total)} of timed blocks")
    if total > MAX_PROFILE_S:
        raise AblateError(f"{text}, at least; one profile may time at most {duration(MAX_PROFILE_S)} "
                          "(it keeps no partial results): lower --rounds, --blocks, --block-time or --batch-sizes, "
                          "skip the training step (--train-batch 0), or profile fewer arms.")
    return f"profile: timing {text} (a lower bound: warm-up, calibration and building models come on top)"


def run(args: argparse.Namespace) -> int:
    shape = _check_options(args)
    import torch

    from .. import costs  # torch, fvcore, pandas and scipy: loaded for this command only
    from ..arms import arms_from_names, dropped_positions
    from ..columns import MAC_POLICY, UNCOUNTED, rows_to_frame
    from ..precision import check_precision
    from ..timing import CI_METHOD, Setting

    device = resolve_device(args.device)
    arms = arms_from_names(args.backbone, args.attention, args.position, args.reduction, args.stages)
    block_time = args.block_time or (0.02 if device.type == "cuda" else 0.05)
    sizes = list(batch_sizes(args, device.type))
    if not args.no_timing:  # before any model is built or run
        print(check_timing_time(len(arms), sizes, bool(args.train_batch), args.rounds, args.blocks, block_time),
              file=sys.stderr)
    from ..arms import plugin_sources
    from ..models.check import check_arm

    outside = {(p["kind"], p["name"]) for p in plugin_sources(arms)}
    for arm in arms:  # code from outside ablate: built and run once, so a bad module fails with its site named
        if ("attention", arm.attention) in outside or ("backbone", arm.backbone.name) in outside:
            check_arm(arm.build_kwargs(), arm.id, num_classes=args.num_classes, in_channels=shape[0],
                      input_size=shape[1])
    _check_fits(arms, shape, args, device)
    for backbone in dict.fromkeys(a.backbone.name for a in arms):
        for dropped, kept in dropped_positions(backbone, args.position or []).items():
            print(f"note: on {backbone}, position {dropped!r} builds the same model as {kept!r}; "
                  f"profiled once as {kept!r}.", file=sys.stderr)  # fmt: skip

    setting = Setting(
        device=str(device), precision=check_precision(args.precision), channels_last=args.channels_last,
        threads=args.threads or available_cores(), rounds=args.rounds, blocks=args.blocks,
        block_time=block_time, cuda_graph=args.cuda_graph,
    )
    train_step = (costs.TrainStep(args.train_batch, lambda m: torch.optim.Adam(m.parameters(), lr=1e-3))
                  if args.train_batch else None)
    by_backbone: dict[str, list] = {}
    for arm in arms:
        by_backbone.setdefault(arm.backbone.label, []).append(arm)
    rows, warnings = [], []
    for label, group in tqdm(by_backbone.items(), desc="profile", unit="backbone", file=sys.stderr, disable=None,
                             leave=False):
        backbone_rows, _ = costs.profile_backbone(group, shape, num_classes=args.num_classes, setting=setting,
                                                  batch_sizes=sizes, train_step=train_step,
                                                  timing=not args.no_timing)
        rows += backbone_rows
        warnings += [w for r in backbone_rows for w in r["timing_warnings"]]
    warnings += [f"{r['arm']}: ops that no MAC policy counts (both MAC columns undercount): {r[UNCOUNTED]}"
                 for r in rows if r.get(UNCOUNTED)]
    for text in warnings:
        print(f"warning: {text}", file=sys.stderr)
    df = rows_to_frame(rows)
    if args.format == "csv":
        text = df.drop(columns=["timing_warnings"]).to_csv(index=False, na_rep="n/a")
    else:
        text = render_table(df, warnings) + "\n"
    if args.out:
        out = Path(args.out)
        check_output_file(out, "--out", "table file", PROFILE_TABLE)
        atomic_write(out, lambda tmp: tmp.write_text(text, encoding="utf-8"))
        print(f"wrote {len(df)} rows to {args.out}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    write_json(args.json, {"mac_policy": dict(MAC_POLICY), "timing": setting.as_dict(), "ci_method": CI_METHOD,
                           "warnings": warnings, "rows": json.loads(df.to_json(orient="records"))}, "profile")
    return 0


def _fmt(column: str, value: Any) -> str:
    """Human formatting per column kind; missing values (CPU memory, factors that do not apply) as n/a or -."""
    import pandas as pd

    if value is None or (isinstance(value, float) and pd.isna(value)):
        return "n/a" if column.startswith("peak_mem") else "-"
    if column.endswith("_pct"):
        return f"{value:+.1f}%"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int) or (isinstance(value, float) and value.is_integer() and "macs" in column):
        return f"{int(value):,}"
    if isinstance(value, float):
        if column.startswith("throughput"):
            return f"{value:,.0f}"
        return f"{value:.3g}" if value < 100 else f"{value:,.1f}"
    return str(value)


def overhead_cell(row: Any, metric: str) -> str:
    """'+26% [19, 33]' (overhead and its 95% CI); '-' for the baseline; a mark when the CI covers zero."""
    from ..columns import Columns, overhead_text

    pct, low, high = (row.get(c) for c in Columns.overhead(metric))
    return overhead_text(pct, low, high)


def _check_fits(arms: list, shape: tuple[int, int, int], args: argparse.Namespace, device: torch.device) -> None:
    """--input, --batch-sizes and --train-batch against the device's free memory, before a tensor is made."""
    from ..memory import check_models_fit
    from ..models import build_model

    builds = {arm.id: (lambda size, arm=arm: build_model(**arm.build_kwargs(), num_classes=args.num_classes,
                                                         in_channels=shape[0], input_size=size, init_seed=0))
              for arm in arms}
    sizes = batch_sizes(args, device.type)
    check_models_fit(builds, shape, device, train_batch=args.train_batch or None, infer_batches=sizes,
                     where="the profile", remedy="use a smaller --input, --batch-sizes or --train-batch")


def render_table(df: Any, warnings: list[str] | None = None) -> str:
    """GitHub table for people: arm id, static costs with % over the same-backbone `none` row, then
    per batch size the latency (median over rounds) and its overhead with CI, the training step the
    same way, and peak memory; csv and --json keep every column."""
    from ..columns import MAC_POLICY_TEXT, UNCOUNTED, Columns, add_baseline_deltas, batch_sizes_of

    table = add_baseline_deltas(df, ["params", "macs_full"])
    sizes = batch_sizes_of(df)
    static = ["arm", "knobs", "params", "params_vs_none_pct", "attn_params", "macs_fvcore_default", "macs_full",
              "macs_full_vs_none_pct", UNCOUNTED, "feature_maps", "hidden"]
    optional = ("knobs", UNCOUNTED)  # shown only when some row has one
    shown = [c for c in static if c in table.columns and not (c in optional and table[c].isna().all())]
    headers = ["vs none" if c.endswith("_vs_none_pct") else c for c in shown]
    body = [[_fmt(c, row[c]) for c in shown] for row in table.to_dict("records")]
    timed = [(f"b{b} ms", Columns.latency(b), Columns.latency_iqr(b), Columns.latency_metric(b)) for b in sizes]
    if Columns.TRAIN_STEP_MS in table:
        timed.append(("train step ms", Columns.TRAIN_STEP_MS, Columns.TRAIN_STEP_IQR, Columns.TRAIN_STEP))
    for label, median, iqr, metric in timed:
        headers += [f"{label} (IQR)", f"{label.split(' ms')[0]} overhead [95% CI]"]
        for cells, row in zip(body, table.to_dict("records")):
            cells += [f"{_fmt(median, row.get(median))} ({_fmt(iqr, row.get(iqr))})", overhead_cell(row, metric)]
    if sizes and Columns.peak_mem(sizes[-1]) in table:
        headers.append(Columns.peak_mem(sizes[-1]))
        for cells, row in zip(body, table.to_dict("records")):
            cells.append(_fmt(Columns.peak_mem(sizes[-1]), row.get(Columns.peak_mem(sizes[-1]))))
    lines = [tabulate(body, headers=headers, tablefmt="github", disable_numparse=True), ""]
    if len(df):
        run = df.iloc[0]
        lines.append(
            f"input {run['input']}, device {run['device']}, precision {run['precision']}, channels_last "
            f"{run['channels_last']}, threads {_fmt('threads', run['threads'])}, "
            f"rounds {_fmt('rounds', run['rounds'])}, "
            f"host {run['host']}. 'vs none': % change over the same backbone without attention. Times: median over "
            "interleaved rounds (every arm of a backbone timed once per round, fresh random order), IQR over rounds. "
            "Overhead: median of the per-round ratios to the baseline timed in the same round, with a "
            "distribution-free 95% CI; '~' marks a CI that covers zero (within timing noise). peak_mem: CUDA only, "
            "above weights and input. --format csv and --json give every column."
        )
    for text in warnings or []:
        lines.append(f"WARNING: {text}")
    lines.append(MAC_POLICY_TEXT)
    return "\n".join(lines)
