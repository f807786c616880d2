"""`ablate profile`: params, MACs, feature maps, latency and memory of every arm, without training.

The arms are the cartesian product of the lists with factors that do not apply collapsed (see
`ablate.measure.enumerate_profile_arms`). `--format table` adds % over the same-backbone `none`
row and prints the MAC counting policy under the table; csv and json carry every column.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from . import csv_list, int_list

FORMATS = ("table", "csv", "json")
AMP_CHOICES = ("none", "bf16", "fp16")


def add_parser(sub: argparse._SubParsersAction) -> None:
    from ..attention import list_attention  # light: the registry only

    p = sub.add_parser(
        "profile",
        help="params, MACs, latency and memory of every arm (no training)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--backbone", type=csv_list, default=["cnn"], help="comma-separated backbones (default: cnn)")
    p.add_argument(
        "--attention",
        type=csv_list,
        default=list_attention(),
        help="comma-separated attention types (default: all registered)",
    )
    p.add_argument("--position", type=csv_list, default=["after_relu"], help="comma-separated insertion positions")
    p.add_argument("--reduction", type=int_list, default=[16], help="comma-separated reduction ratios (default: 16)")
    p.add_argument("--stages", default="all", help="'all' or comma-separated 1-based block indexes (default: all)")
    p.add_argument("--input", default="3x32x32", metavar="CxHxW", help="one image's shape (default: 3x32x32)")
    p.add_argument("--num-classes", type=int, default=10, help="classifier outputs (default: 10)")
    p.add_argument("--device", default="cpu", help="cpu | cuda | cuda:N (default: cpu)")
    p.add_argument(
        "--batch-sizes",
        type=int_list,
        default=None,
        help="batch sizes to time (default: 1,64 on cpu; 1,256 on cuda)",
    )
    p.add_argument("--amp", choices=AMP_CHOICES, default="none", help="autocast dtype while timing (default: none)")
    p.add_argument("--channels-last", action="store_true", help="time with channels_last model and input")
    p.add_argument(
        "--min-run-time",
        type=float,
        default=None,
        metavar="SECONDS",
        help="timed seconds per arm and batch size, at least (default: 0.2 on cpu, 0.5 on cuda)",
    )
    p.add_argument(
        "--max-run-time",
        type=float,
        default=None,
        metavar="SECONDS",
        help="stop timing an arm and batch size after this long (default: 10 x --min-run-time)",
    )
    p.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch intra-op threads while timing; 1 (default, as torch.utils.benchmark) is the reproducible "
        "choice on shared machines; 0 = torch's default (all cores)",
    )
    p.add_argument("--no-timing", action="store_true", help="params and MACs only (fast)")
    p.add_argument("--format", choices=FORMATS, default="table", help="output format (default: table)")
    p.add_argument("--out", metavar="FILE", default=None, help="write to FILE instead of stdout")
    p.set_defaults(func=run)


def _stages(text: str) -> Any:
    from ..errors import AblateError

    if text.strip() == "all":
        return "all"
    try:
        return int_list(text)
    except argparse.ArgumentTypeError:
        raise AblateError(f"--stages must be 'all' or comma-separated block indexes, got {text!r}.") from None


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from .. import measure
    from ..errors import AblateError

    shape = measure.parse_input_shape(args.input)
    device = measure.resolve_device(args.device)
    for name, value in (("--min-run-time", args.min_run_time), ("--max-run-time", args.max_run_time)):
        if value is not None and not value > 0:
            raise AblateError(f"{name} must be a positive number of seconds, got {value}.")
    if args.batch_sizes is not None and (not args.batch_sizes or min(args.batch_sizes) < 1):
        raise AblateError(f"--batch-sizes must be positive integers, got {args.batch_sizes}.")
    if args.num_classes < 1:
        raise AblateError(f"--num-classes must be a positive integer, got {args.num_classes}.")
    if args.threads < 0:
        raise AblateError(f"--threads must be >= 0 (0: torch's default), got {args.threads}.")
    stages = _stages(args.stages)
    arms = measure.enumerate_profile_arms(args.backbone, args.attention, args.position, args.reduction, stages)
    for backbone in dict.fromkeys(args.backbone):
        for dropped, kept in measure.equivalent_positions(backbone, args.position).items():
            print(f"note: on {backbone}, position {dropped!r} builds the same model as {kept!r}; "
                  f"profiled once as {kept!r}.", file=sys.stderr)  # fmt: skip

    rows = [
        measure.profile_arm(
            arm,
            shape,
            num_classes=args.num_classes,
            device=device,
            batch_sizes=args.batch_sizes,
            amp=None if args.amp == "none" else args.amp,
            channels_last=args.channels_last,
            min_run_time=args.min_run_time,
            max_run_time=args.max_run_time,
            threads=args.threads or None,
            timing=not args.no_timing,
        )
        for arm in tqdm(arms, desc="profile", unit="arm", file=sys.stderr, disable=None, leave=False)
    ]
    df = measure.rows_to_frame(rows)
    if args.format == "csv":
        text = df.to_csv(index=False, na_rep="n/a")
    elif args.format == "json":
        records = json.loads(df.to_json(orient="records"))
        text = json.dumps({"mac_policy": dict(measure.MAC_POLICY), "rows": records}, indent=2) + "\n"
    else:
        text = render_table(df, measure) + "\n"
    if args.out:
        with open(args.out, "w", encoding="utf-8") as fh:
            fh.write(text)
        print(f"wrote {len(df)} rows to {args.out}", file=sys.stderr)
    else:
        sys.stdout.write(text)
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


def render_table(df: Any, measure: Any) -> str:
    """GitHub table for people: arm id, costs, % over the same-backbone `none` row, latency at the
    smallest batch, throughput at the others, peak memory at the largest; csv/json keep every column."""
    import re

    from tabulate import tabulate

    table = measure.add_baseline_deltas(df)
    sizes = sorted(int(m.group(1)) for c in table.columns if (m := re.fullmatch(r"latency_b(\d+)_ms_median", c)))
    wanted = ["arm", "knobs", "params", "params_vs_none_pct", "attn_params", "macs_fvcore_default", "macs_full",
              "macs_full_vs_none_pct", "attn_macs_fvcore_default", "attn_macs_full", "feature_maps", "hidden"]  # fmt: skip
    if sizes:
        first = sizes[0]
        wanted += [f"latency_b{first}_ms_median", f"latency_b{first}_ms_median_vs_none_pct", f"latency_b{first}_ms_iqr"]
        for b in sizes[1:]:
            wanted += [f"throughput_b{b}_img_s", f"throughput_b{b}_img_s_vs_none_pct"]
        wanted.append(f"peak_mem_b{sizes[-1]}_mib")
    shown = [c for c in wanted if c in table.columns and not (c == "knobs" and table[c].isna().all())]
    body = [[_fmt(c, row[c]) for c in shown] for row in table.to_dict("records")]
    headers = ["vs none" if c.endswith("_vs_none_pct") else c for c in shown]
    lines = [tabulate(body, headers=headers, tablefmt="github", disable_numparse=True), ""]
    if len(df):
        run = df.iloc[0]
        lines.append(
            f"input {run['input']}, device {run['device']}, amp {run['amp']}, channels_last {run['channels_last']}, "
            f"threads {_fmt('threads', run['threads'])}. "
            "'vs none': % change over the same backbone without attention. Latency: median and IQR over timed "
            "blocks (torch.utils.benchmark), eval mode, inference_mode; peak_mem: CUDA only (n/a on CPU). "
            "--format csv/json give every column (latency, throughput and memory at every batch size)."
        )
    lines.append(measure.MAC_POLICY_TEXT)
    return "\n".join(lines)
