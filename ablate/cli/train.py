"""`ablate train`: one arm, one seed, one dataset; a progress bar, the curves and the final numbers.

Every option left out takes its default from Recipe / DataConfig / Runtime, so the command, a
study file and the Python API agree. Defaults reproduce ref000 (Adam 1e-3, batch 64, plateau
schedule, crop/flip/jitter/rotate) and report the test accuracy after each epoch (`--eval val`
reports validation instead). Unlike ref000, the test split never decides anything: the plateau
schedule steps on a validation split, so with it 10% of the training images are held out by
default (`--val-fraction`), and `--val-fraction 0` needs a schedule that reads no data (cosine,
onecycle, none), which then trains on the whole training split as ref000 did.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tabulate import tabulate

from ..config import check_range, is_unusable_number
from ..datasets import (
    DataConfig,
    check_batch_size,
    check_dataset_sizes,
    check_host_fits,
    require_present,
)
from ..device import refuse_cuda_without_gpu
from ..errors import AblateError, EnvironmentFault, unknown
from ..files import check_output_file
from ..names import BUILTIN_ATTENTION, DATASETS, POSITIONS, attention_names, builtin_knob_error
from ..plugins import is_import_path
from ..recipe import EVAL_SPLITS, OPTIMIZERS, SCHEDULERS, Recipe, Runtime, check_schedule
from . import (
    add_backbone,
    add_data_dir,
    add_device,
    add_json,
    add_threads,
    check_json,
    csv_list,
    finite_float,
    integer,
    option_names,
    seed,
    stages,
    write_json,
)

if TYPE_CHECKING:
    from ..train import TrainResult

DEFAULT_VAL_FRACTION = 0.1  # ablate.datasets.DataConfig.val_fraction (a test keeps them equal)



def parse_knob(text: str) -> tuple[str, Any]:
    """'k=v' -> (k, v) with v read as int, float, true/false, or left a string."""
    key, sep, raw = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    low = raw.lower()
    if low in ("true", "false"):
        return key, low == "true"
    for kind in (int, float):
        try:
            value = kind(raw)
        except ValueError:
            continue
        if is_unusable_number(value):
            raise argparse.ArgumentTypeError(f"{key}: {raw!r} is not a usable number (NaN, infinities and integers "
                                             "beyond 64 bits cannot work)")
        return key, value
    return key, raw


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train one arm on one dataset (ref000 recipe by default)",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    arm = p.add_argument_group("arm")
    add_backbone(arm, default="cnn", several=False)
    arm.add_argument("--attention", default="none", help="attention type (see `ablate list attention`)")
    arm.add_argument("--position", default=None, choices=list(POSITIONS),
                     help="where modules go (default: the backbone's own: after_relu on cnn/vgg16, standard on "
                          "ResNets)")
    arm.add_argument("--reduction", type=integer, default=16)
    arm.add_argument("--stages", type=stages, default="all", help="'all' or block indexes, e.g. 1,2")
    arm.add_argument("--head", help="classifier head (backbone default when omitted)")
    arm.add_argument("--knob", type=parse_knob, action="append", default=[], metavar="KEY=VALUE",
                     help="an attention knob, repeatable (e.g. --knob kernel_size=7)")

    data = p.add_argument_group("data")
    data.add_argument("--dataset", default="cifar10", help=f"{', '.join(DATASETS)} or imagefolder:<path>")
    add_data_dir(data)
    data.add_argument("--train-size", type=integer, help="images drawn from the training split (all by default)")
    data.add_argument("--test-size", type=integer, help="images drawn from the test split (all by default)")
    data.add_argument("--val-fraction", type=finite_float,
                      help="share of training images held out for validation, which decides the plateau schedule "
                           "(default 0.1 with --eval val or the plateau scheduler, else 0)")
    data.add_argument("--augment", type=csv_list, help="comma-separated subset of crop,flip,jitter,rotate; "
                                                      "'none' for no augmentation (default: all four)")
    data.add_argument("--input-size", type=integer, help="pad images to this size (e.g. 32 for 28x28 data into vgg16)")
    data.add_argument("--split-seed", type=integer)

    rec = p.add_argument_group("recipe")
    rec.add_argument("--optimizer", choices=OPTIMIZERS)
    rec.add_argument("--lr", type=finite_float)
    rec.add_argument("--weight-decay", type=finite_float)
    rec.add_argument("--momentum", type=finite_float)
    rec.add_argument("--nesterov", action=argparse.BooleanOptionalAction, default=None)
    rec.add_argument("--batch-size", type=integer)
    rec.add_argument("--epochs", type=integer)
    rec.add_argument("--scheduler", choices=SCHEDULERS)
    rec.add_argument("--label-smoothing", type=finite_float)
    rec.add_argument("--grad-clip", type=finite_float)

    run_ = p.add_argument_group("run")
    run_.add_argument("--seed", type=seed, default=0, help="0 to 2**63-1 (default: 0)")
    run_.add_argument("--eval", dest="eval_split", choices=EVAL_SPLITS, default="test",
                      help="split the reported accuracy comes from (default: test, as ref000); validation, "
                           "when held out, is evaluated too and alone decides")
    run_.add_argument("--target-acc", type=finite_float,
                      help="report the epochs and training seconds until the validation accuracy reached this (%%)")
    add_device(run_)
    run_.add_argument("--amp", action=argparse.BooleanOptionalAction, default=None,
                      help="bf16 autocast (default: on for CUDA only)")
    run_.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=None)
    run_.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None)
    run_.add_argument("--deterministic", action=argparse.BooleanOptionalAction, default=None)
    add_threads(run_, default=None, default_text="every core, as the study file's runtime.threads")
    run_.add_argument("--checkpoint", type=Path, help="save after every epoch; resume when it exists")
    add_json(run_)
    run_.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
    p.set_defaults(func=run)


def check_arm_names(attention: str, knobs: dict[str, Any]) -> None:
    """An unknown attention type, or a bad knob of a built-in one, refused before torch is imported (a plugin's
    knobs are checked by the registry once it is loaded)."""
    if not is_import_path(attention) and attention not in attention_names():
        raise unknown("attention type", attention, attention_names())
    for key, value in knobs.items() if attention in BUILTIN_ATTENTION else ():
        problem = builtin_knob_error(attention, key, value)
        if problem is not None:
            raise AblateError(problem)


def _given(args: argparse.Namespace, keys: dict[str, str]) -> dict[str, Any]:
    """{config key: value} for the options the user actually gave."""
    return {key: getattr(args, attr) for key, attr in keys.items() if getattr(args, attr) is not None}


def default_val_fraction(eval_split: str, scheduler: str) -> float:
    """Hold out validation when something reads it: --eval val, or the plateau schedule (never test)."""
    return DEFAULT_VAL_FRACTION if eval_split == "val" or scheduler == "plateau" else 0.0


def target_line(result: TrainResult) -> str:
    """', 95% reached at epoch 3 (12.1 s of training) on val' or ', 95% not reached (> 5 epochs)'."""
    if result.target_acc is None:
        return ""
    if result.target_censored:
        return f", {result.target_acc:g}% not reached on {result.target_split} (> {result.epochs_run} epochs)"
    return (f", {result.target_acc:g}% reached on {result.target_split} at epoch {result.time_to_target_epochs} "
            f"({result.time_to_target_s:.1f} s of training)")


def _with_input_hint(err: AblateError, size: int) -> AblateError:
    """An arm that needs larger images than the data's: say how to pad them."""
    if "input_size" not in str(err):
        return err
    return AblateError(f"{err} The data is {size}x{size}: --input-size 32 pads it.")


def _check_fits(info: Any, recipe: Recipe, runtime: Runtime, arm: dict[str, Any]) -> None:
    """A dataset and training step the device cannot hold: refused with the figures before anything is
    allocated (the batch against the data and the host's memory were checked before torch)."""
    from ..device import resolve_device
    from ..memory import check_models_fit, dataset_bytes
    from ..models import build_model

    shape = (info.in_channels, info.input_size, info.input_size)
    kwargs = {k: v for k, v in arm.items() if v is not None}
    def build(size: int) -> Any:
        return build_model(**kwargs, num_classes=info.num_classes, in_channels=shape[0], input_size=size, init_seed=0)

    check_models_fit({arm["attention"]: build}, shape, resolve_device(runtime.device), train_batch=recipe.batch_size,
                     infer_batches=(runtime.eval_batch_size,),
                     held=dataset_bytes(info.train_count + info.val_count + info.test_count, shape),
                     where="the run", remedy="use a smaller --batch-size, --input-size or --train-size")


def _data_config(args: argparse.Namespace, options: dict[str, Any], recipe: Recipe,
                 runtime: Runtime) -> tuple[DataConfig, Any]:
    """The data options against the dataset's metadata, its files where present, the batch and the host's
    memory: all before torch is imported and before a fetch writes anything."""
    config = DataConfig.from_dict(options, "options")
    info = check_dataset_sizes(config, "options.")
    require_present(config, args.data_dir, missing_ok=True)  # a truncated file, named; missing ones are fetched later
    check_batch_size(recipe.batch_size, info, "--batch-size")
    remedy = "use a smaller --input-size, --train-size, --test-size or --batch-size"
    check_host_fits(info, recipe.batch_size, "the run", remedy, backbones=[args.backbone] if args.head is None else [],
                    device=runtime.device, infer_batches=(runtime.eval_batch_size,))
    return config, info


def _as_options(err: AblateError) -> AblateError:
    """'options.batch_size: ...' (the config key path) -> '--batch-size: ...' (what the user typed); the model's
    own 'stages: ...' likewise."""
    return AblateError(re.sub(r"^stages:", "--stages:", str(option_names(err))))


def run(args: argparse.Namespace) -> int:
    try:
        return _run(args)
    except EnvironmentFault:  # exit 1, not 2: keeps its type
        raise
    except AblateError as err:
        raise _as_options(err) from None


def _run(args: argparse.Namespace) -> int:
    from ..checkpoint import is_ablate_checkpoint  # no torch: it reads the file's first bytes

    check_json(args.json)  # outputs first: never a user's file, and no refusal after hours of training
    if args.checkpoint is not None:
        check_output_file(args.checkpoint, "--checkpoint", "checkpoint", is_ablate_checkpoint)

    recipe = Recipe.from_dict(_given(args, {k: k for k in (
        "optimizer", "lr", "weight_decay", "momentum", "nesterov", "batch_size", "epochs", "scheduler",
        "label_smoothing", "grad_clip")}), "options")
    try:
        check_schedule(recipe, has_validation=args.val_fraction != 0)
    except AblateError as err:
        raise AblateError(f"--val-fraction 0 leaves no validation split: {err}") from None
    data_opts = _given(args, {"name": "dataset", "train_size": "train_size", "test_size": "test_size",
                              "val_fraction": "val_fraction", "input_size": "input_size",
                              "split_seed": "split_seed"})
    if args.augment is not None:
        data_opts["augment"] = [] if args.augment == ["none"] else args.augment
    data_opts.setdefault("val_fraction", default_val_fraction(args.eval_split, recipe.scheduler))
    runtime_opts = _given(args, {k: k for k in (
        "device", "amp", "channels_last", "compile", "deterministic", "threads")})
    if runtime_opts.get("threads") == 0:
        del runtime_opts["threads"]  # every core: Runtime's own default
    runtime = Runtime.from_dict(runtime_opts, "options")
    refuse_cuda_without_gpu(runtime.device, "--device")
    check_arm_names(args.attention, dict(args.knob))
    check_range("options.reduction", args.reduction, 1)
    check_range("options.target_acc", args.target_acc, 0.0, 100.0, low_open=True)
    data_cfg, info = _data_config(args, data_opts, recipe, runtime)
    # torch from here: every check of an option that needs none is done
    from ..datasets import load_data
    from ..train import NonFiniteLossError, model_factory, train

    arm = {"backbone": args.backbone, "attention": args.attention, "position": args.position,
           "reduction": args.reduction, "stages": args.stages, "head": args.head, **dict(args.knob)}

    try:  # a bad arm fails here too, before any data is loaded
        _check_fits(info, recipe, runtime, arm)  # before the dataset is padded or a batch is made
    except AblateError as err:
        raise _with_input_hint(err, info.input_size) from None
    data = load_data(data_cfg, args.data_dir, fetch_missing=True)
    meta = data.meta
    print(f"{args.backbone}/{args.attention} on {meta.name}: {meta.sizes[0]} train, {meta.sizes[1]} val, "
          f"{meta.sizes[2]} test images of {meta.in_channels}x{meta.input_size}x{meta.input_size}; "
          f"{recipe.epochs} epochs, {recipe.optimizer} lr {recipe.lr}, batch {recipe.batch_size}, "
          f"scheduler {recipe.scheduler}", file=sys.stderr)
    build = model_factory(**arm)
    try:
        build(meta)  # fail on a bad arm before any training starts
    except AblateError as err:
        raise _with_input_hint(err, meta.input_size) from None
    try:
        result = train(build, data, recipe, seed=args.seed, runtime=runtime, eval_split=args.eval_split,
                       target_acc=args.target_acc, checkpoint_path=args.checkpoint, progress=args.progress)
    except NonFiniteLossError as err:
        raise AblateError(str(err)) from None

    split = args.eval_split
    curves = [(name, getattr(result, f"{name}_loss"), getattr(result, f"{name}_acc")) for name in ("val", "test")]
    curves = [c for c in curves if c[1]]
    rows = [[e + 1, f"{result.train_loss[e]:.4f}", f"{result.train_acc[e]:.2f}",
             *(v for _, loss, acc in curves for v in (f"{loss[e]:.4f}", f"{acc[e]:.2f}")),
             f"{result.lr[e]:.2e}", f"{result.train_time_s[e]:.1f}", f"{result.epoch_time_s[e]:.1f}",
             f"{result.samples_per_s[e]:.0f}"] for e in range(result.epochs_run)]
    print(tabulate(rows, headers=["epoch", "train loss", "train acc %",
                                  *(h for name, _, _ in curves for h in (f"{name} loss", f"{name} acc %")),
                                  "lr", "train s", "epoch s", "img/s"], tablefmt="github"))
    reached = target_line(result)
    memory = f", peak GPU memory {result.peak_mem_mib:.0f} MiB" if result.peak_mem_mib is not None else ""
    print(f"final {split} acc {result.final_acc:.2f}% (best {result.best_acc:.2f}% at epoch {result.best_epoch}); "
          f"{result.n_params:,} params; {result.total_time_s:.1f} s, {result.throughput:.0f} train img/s on "
          f"{result.device}{reached}{memory}")
    write_json(args.json, {"arm": arm, "data": {**data_cfg.as_dict(), "meta": meta.as_dict()},
                           "recipe": recipe.as_dict(), "runtime": runtime.as_dict(), "result": result.as_dict()},
               "train")
    return 0
