"""`ablate bench`: seed 000's DataLoader+PIL loop against ablate's engine, and the harness overhead."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from tabulate import tabulate

from ..bench import bench_table, run_bench
from ..data import DATA_ENV
from ..device import resolve_device
from ..train import Runtime
from . import csv_list

RATIO_TARGET = {"cpu": 1.5, "cuda": 10.0}  # for the cnn backbone
OVERHEAD_TARGET_PCT = 5.0


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench", help="seed-000 training loop vs ablate's engine (samples/s, ratio, overhead)")
    p.add_argument("--backbones", type=csv_list, default=["cnn", "vgg16"])
    p.add_argument("--dataset", default="synthetic", help="synthetic (CIFAR-shaped, default) or any dataset name")
    p.add_argument("--data-dir", help=f"data root (default: ${DATA_ENV}, else ./data)")
    p.add_argument("--train-size", type=int, help="training images (default: per backbone and device)")
    p.add_argument("--input-size", type=int, help="pad images to this size (e.g. 32 for fashion-mnist)")
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--repeats", type=int, default=2, help="alternate the loops this often and keep the best of each")
    p.add_argument("--device", default="auto", help="auto (default), cpu, cuda, cuda:N")
    p.add_argument("--json", type=Path, help="write the rows to this file")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    runtime = Runtime.from_dict({"device": args.device}, "ablate bench")
    device = resolve_device(runtime.device)
    rows = run_bench(args.backbones, dataset=args.dataset, train_size=args.train_size, input_size=args.input_size,
                     epochs=args.epochs, batch_size=args.batch_size, runtime=runtime, repeats=args.repeats,
                     root=args.data_dir)
    print(f"device: {rows[0].device}; dataset {args.dataset}, batch {args.batch_size}; engine: channels_last "
          f"{runtime.channels_last}, precision {runtime.precision(device)}, compile {runtime.compile}")
    headers, body = bench_table(rows)
    print(tabulate(body, headers=headers, tablefmt="github"))
    target = RATIO_TARGET.get(device.type)
    for r in rows:
        if r.backbone == "cnn" and target is not None:
            print(f"cnn speed-up {r.ratio:.2f}x (target >= {target:g}x on {device.type}): "
                  f"{'met' if r.ratio >= target else 'NOT met'}")
    worst = max(r.overhead_pct for r in rows)
    print(f"harness overhead at most {worst:+.1f}% (target <= {OVERHEAD_TARGET_PCT:g}%): "
          f"{'met' if worst <= OVERHEAD_TARGET_PCT else 'NOT met'}")
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps([r.as_dict() for r in rows], indent=2))
    return 0
