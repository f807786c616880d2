"""`ablate bench`: ref000's DataLoader+PIL loop against ablate's engine, and the harness overhead;
`--workers`: does a second worker pay (steady-state items/min); `--startup`: what a worker pays to start."""

from __future__ import annotations

import argparse
import tempfile

from tabulate import tabulate

from ..datasets import DataConfig
from ..device import resolve_device
from ..errors import AblateError
from ..recipe import Runtime
from . import add_backbone, add_data_dir, add_device, add_json, int_list, write_json

RATIO_TARGET = {"cpu": 1.5, "cuda": 10.0}  # for the cnn backbone
OVERHEAD_TARGET_PCT = 5.0
SCALING_TARGET = 1.2  # steady-state items/min of the last worker count over the first (issue 13)
SCALING_DATASET = "fashion-mnist"
STARTUP_WARM_RUNS = 3


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench", help="ref000 training loop vs ablate's engine (samples/s, ratio, overhead)")
    add_backbone(p, default=["cnn", "vgg16"])
    p.add_argument("--dataset", help="synthetic (CIFAR-shaped; the default) or any dataset name; "
                                     f"--workers and --startup default to {SCALING_DATASET}")
    add_data_dir(p)
    p.add_argument("--train-size", type=int, help="training images (default: per backbone and device)")
    p.add_argument("--input-size", type=int, help="pad images to this size (e.g. 32 for fashion-mnist)")
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--repeats", type=int, help="alternate the loops (or, with --workers, the worker counts) this "
                                               "often and keep the best of each (default 2; with --workers 1)")
    add_device(p)
    add_json(p)
    p.add_argument("--workers", type=int_list, nargs="?", const=[1, 2], metavar="N,M",
                   help="instead: the same 24-item final phase through `ablate run` with each worker count "
                        "(default 1,2), threads = cores // workers; steady-state items/min side by side")
    p.add_argument("--startup", action="store_true",
                   help="instead: a fresh worker's start-up (imports, dataset load cold then warm, first step)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.workers is not None:
        return run_workers(args)
    if args.startup:
        return run_startup(args)
    from ..bench import bench_table, run_bench  # the reference loop, Optuna and pandas: for this command only

    runtime = Runtime.from_dict({"device": args.device}, "ablate bench")
    device = resolve_device(runtime.device)
    rows = run_bench(args.backbone, dataset=args.dataset or "synthetic", train_size=args.train_size,
                     input_size=args.input_size,
                     epochs=args.epochs, batch_size=args.batch_size, runtime=runtime, repeats=args.repeats or 2,
                     root=args.data_dir)
    print(f"device: {rows[0].device}; dataset {args.dataset or 'synthetic'}, batch {args.batch_size}; engine: "
          f"channels_last {runtime.channels_last}, precision {runtime.precision(device)}, compile {runtime.compile}")
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
    write_json(args.json, [r.as_dict() for r in rows], "bench")
    return 0


def run_workers(args: argparse.Namespace) -> int:
    from ..memory import check_workers

    if not args.workers or any(n < 1 for n in args.workers):
        raise AblateError(f"--workers needs positive worker counts, got {args.workers}.")
    for count in args.workers:  # every count before the first one trains
        check_workers(count)
    from ..bench import run_scaling, scaling_table  # torch, Optuna and pandas: after the checks
    kwargs = {"train_size": args.train_size} if args.train_size else {}
    rows = run_scaling(args.workers, dataset=args.dataset or SCALING_DATASET, input_size=args.input_size,
                       root=args.data_dir, repeats=args.repeats or 1, **kwargs)
    print(f"the same {rows[0].items}-item final phase ({args.dataset or SCALING_DATASET}, cnn arms x seeds, 1 epoch) "
          f"through `ablate run`, best of {args.repeats or 1} turn(s) each; steady state = completions after the "
          "first, over first -> last completion")
    headers, body = scaling_table(rows)
    print(tabulate(body, headers=headers, tablefmt="github"))
    if len(rows) > 1:
        ratio = rows[-1].items_per_min / rows[0].items_per_min
        print(f"{rows[-1].workers} workers vs {rows[0].workers}: {ratio:.2f}x steady-state items/min "
              f"(target >= {SCALING_TARGET:g}x): {'met' if ratio >= SCALING_TARGET else 'NOT met'}")
    write_json(args.json, [r.as_dict() for r in rows], "bench --workers")
    return 0


def run_startup(args: argparse.Namespace) -> int:
    """A cold start (empty cache folder) and warm ones, each a fresh process, one at a time."""
    from ..startup_probe import fresh_worker_startup

    config = DataConfig(name=args.dataset or SCALING_DATASET, train_size=args.train_size or 8000,
                        input_size=args.input_size)
    runtime = Runtime.from_dict({"device": args.device, "threads": 1}, "ablate bench")
    rows = []
    with tempfile.TemporaryDirectory(prefix="ablate-startup-cache-") as cache:
        for label in ["cold"] + ["warm"] * STARTUP_WARM_RUNS:
            s = fresh_worker_startup(config, args.data_dir, runtime=runtime, batch_size=args.batch_size, cache=cache)
            rows.append({"run": label, **s.as_dict()})
    print(f"a fresh worker process, {config.name} (train_size {config.train_size}), cnn, 1 thread; "
          "cold = empty dataset cache, warm = the entry the cold run wrote")
    print(tabulate([[r["run"], _seconds(r["process_s"]), _seconds(r["data_s"]), r["data_from"],
                     _seconds(r["deferred_import_s"]), _seconds(r["first_step_s"]), _seconds(r["step_s"]),
                     _seconds(r["total_s"])] for r in rows],
                   headers=["run", "interpreter + imports (s)", "dataset (s)", "dataset from", "torch._dynamo (s)",
                            "first step (s)", "next step (s)", "total (s)"], tablefmt="github"))
    write_json(args.json, rows, "bench --startup")
    return 0


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"
