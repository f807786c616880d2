"""`ablate bench`: ref000's DataLoader+PIL loop against ablate's engine, and the harness overhead;
`--workers`: does a second worker pay (steady-state items/min); `--startup`: what a worker pays to start."""

from __future__ import annotations

import argparse
import tempfile

from tabulate import tabulate

from ..bench_sizes import (
    SCALING_BATCH_SIZE,
    SCALING_DATASET,
    SCALING_TEST_SIZE,
    SCALING_TRAIN_SIZE,
    STARTUP_TRAIN_SIZE,
    bench_data_options,
    bench_train_size,
    check_bench_data,
)
from ..bounds import MAX_BENCH_REPEATS, MAX_EPOCHS
from ..config import check_range
from ..datasets import DataConfig
from ..device import check_device_setting, gpu_driver_present, refuse_cuda_without_gpu, resolve_device
from ..errors import AblateError, EnvironmentFault
from ..recipe import Runtime
from . import add_backbone, add_data_dir, add_device, add_json, int_list, integer, option_names, write_json

RATIO_TARGET = {"cpu": 1.5, "cuda": 10.0}  # for the cnn backbone
OVERHEAD_TARGET_PCT = 5.0
SCALING_TARGET = 1.2  # steady-state items/min of the last worker count over the first (issue 13)
STARTUP_WARM_RUNS = 3
REMEDY = "use a smaller --input-size, --train-size or --batch-size"


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench", help="ref000 training loop vs ablate's engine (samples/s, ratio, overhead)")
    add_backbone(p, default=["cnn", "vgg16"])
    p.add_argument("--dataset", help="synthetic (CIFAR-shaped; the default) or any dataset name; "
                                     f"--workers and --startup default to {SCALING_DATASET}")
    add_data_dir(p)
    p.add_argument("--train-size", type=integer, help="training images (default: per backbone and device)")
    p.add_argument("--input-size", type=integer, help="pad images to this size (e.g. 32 for fashion-mnist)")
    p.add_argument("--epochs", type=integer, default=1, help=f"1 to {MAX_EPOCHS:,} (default 1)")
    p.add_argument("--batch-size", type=integer, default=64,
                   help="at most the images trained on per epoch (default 64; --workers trains at "
                        f"{SCALING_BATCH_SIZE})")
    p.add_argument("--repeats", type=integer, help="alternate the loops (or, with --workers, the worker counts) this "
                                               "often and keep the best of each, 1 to "
                                                  f"{MAX_BENCH_REPEATS} (default 2; with --workers 1)")
    add_device(p)
    add_json(p)
    p.add_argument("--workers", type=int_list, nargs="?", const=[1, 2], metavar="N,M",
                   help="instead: the same 24-item final phase through `ablate run` with each worker count "
                        "(default 1,2), threads = cores // workers; steady-state items/min side by side")
    p.add_argument("--startup", action="store_true",
                   help="instead: a fresh worker's start-up (imports, dataset load cold then warm, first step)")
    p.set_defaults(func=run)


def check_options(args: argparse.Namespace) -> None:
    """Every count before any work and before torch: ranges, then the data each mode trains on (counts against
    the dataset's metadata, the batch against its training images, one float batch against host memory)."""
    try:
        check_range("--epochs", args.epochs, 1, MAX_EPOCHS)
        check_range("--batch-size", args.batch_size, 1)
        check_range("--repeats", args.repeats, 1, MAX_BENCH_REPEATS)
        check_range("--train-size", args.train_size, 1)
        if args.workers is None:  # --workers runs `ablate run`, whose studies set no device
            check_device_setting("--device", args.device)
            refuse_cuda_without_gpu(args.device, "--device")
        for label, options, batch in data_plans(args):
            try:
                check_bench_data(options, batch, REMEDY)
            except AblateError as err:
                raise AblateError(f"{label}{err}") from None
    except EnvironmentFault:
        raise
    except AblateError as err:
        raise option_names(err) from None


def data_plans(args: argparse.Namespace) -> list[tuple[str, dict, int]]:
    """(label, DataConfig keys, batch size) of every dataset the chosen mode loads, known without torch."""
    if args.workers is not None:
        size = args.train_size or SCALING_TRAIN_SIZE
        if size < SCALING_BATCH_SIZE:
            raise AblateError(f"--train-size {size}: --workers trains the same phase at batch size "
                              f"{SCALING_BATCH_SIZE} at every worker count, so it needs at least {SCALING_BATCH_SIZE} "
                              f"training images; allowed: {SCALING_BATCH_SIZE} up to the dataset's training images.")
        options = {"name": args.dataset or SCALING_DATASET, "train_size": size, "test_size": SCALING_TEST_SIZE,
                   "val_fraction": 0.0}
        return [("", _with_input_size(options, args.input_size), SCALING_BATCH_SIZE)]
    if args.startup:
        options = {"name": args.dataset or SCALING_DATASET, "train_size": args.train_size or STARTUP_TRAIN_SIZE}
        return [("", _with_input_size(options, args.input_size), args.batch_size)]
    device_types = {"cpu": ["cpu"], "auto": ["cpu", "cuda"] if gpu_driver_present() else ["cpu"]}
    types = device_types.get(args.device, ["cuda"])
    # 'auto' on a machine with a GPU driver: what no device can run (run_bench checks the device it resolves)
    sizes = {b: max(bench_train_size(b, t, args.train_size) for t in types) for b in args.backbone}
    return [("" if args.train_size else f"--backbone {b} (trains on {size} images unless --train-size is given): ",
             bench_data_options(args.dataset or "synthetic", size, args.input_size), args.batch_size)
            for b, size in sizes.items()]


def _with_input_size(options: dict, input_size: int | None) -> dict:
    return options if input_size is None else {**options, "input_size": input_size}


def run(args: argparse.Namespace) -> int:
    check_options(args)
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

    config = DataConfig(name=args.dataset or SCALING_DATASET, train_size=args.train_size or STARTUP_TRAIN_SIZE,
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
