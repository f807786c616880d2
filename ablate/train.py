"""The training loop and its timing: ref000's recipe, run fast and measured honestly.

Defaults reproduce ref000 (Adam 1e-3, batch 64, ReduceLROnPlateau with patience 3 and factor
0.5, crop/flip/jitter/rotate augmentation). What is different is how it runs: the data is already
on the device as uint8 (data.py), batches are augmented there (augment.py), and the loop never
waits for the device inside an epoch except for one non-finite-loss check every
`Runtime.check_every` steps. Epoch times are taken after a device synchronisation, so they are real.
With `Runtime(compile=True)` the model is compiled before the first epoch's clock starts (its
seconds are `warmup_s`), and only full batches go through the compiled graph (see compile_model).
Mixed precision is bf16 where the GPU has it, else fp16 with loss scaling; `precision` records it.

Test data never decides. Seed 000 steps ReduceLROnPlateau on the test loss, which leaks the test
set into training. Here the validation split makes every decision (the plateau step, what an
epoch callback sees for pruning or early stopping, time to target), and the test split, when a
run reports on it, is evaluated after every epoch and only recorded. A plateau schedule without a
validation split is refused rather than quietly stepped on test.

Reproducibility and pairing: the run seed fixes model initialisation, dropout, shuffling and
augmentation; on CPU the same seed gives the same metrics. On CUDA set
`Runtime(deterministic=True)` for that (slower: cuDNN autotuning off); ops that have no
deterministic CUDA kernel only warn, and the run lists them in `nondeterministic_ops`. At one seed, arms are
paired: every layer a backbone's arms share starts from the same weights (build_model seeds each
layer by its path), and shuffling and augmentation come from generators that no model touches, so
every arm sees the same batches.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from .augment import Augment, Normalize, to_unit_float
from .checkpoint import save_checkpoint
from .config import check_choice, check_range
from .datasets import Data, DataMeta, Split
from .device import device_name, resolve_device, synchronize
from .errors import AblateError
from .models import build_model
from .precision import autocast
from .preempt import PREEMPTION
from .recipe import EVAL_SPLITS, Recipe, Runtime, check_schedule
from .records import encode_correct, time_to_target
from .resume import restore_or_roll_back, resumable_state, run_fingerprint, say, snapshot
from .switches import record_nondeterministic_ops, set_cublas_workspace, torch_settings

ModelFactory = Callable[[DataMeta], nn.Module]
EpochCallback = Callable[[int, dict[str, Any]], "bool | None"]


class NonFiniteLossError(RuntimeError):
    """The training loss became NaN or infinite (usually: learning rate too high). A study records it."""

    def __init__(self, epoch: int, step: int, value: float) -> None:
        self.epoch, self.step, self.value = epoch, step, value
        super().__init__(f"non-finite training loss ({value}) at epoch {epoch}, step {step}; lower the learning rate "
                         f"or set grad_clip.")

    def __reduce__(self) -> tuple[Any, ...]:  # picklable across worker processes
        return (type(self), (self.epoch, self.step, self.value))


# ---------------------------------------------------------------------------------------------
# the pieces of a run
# ---------------------------------------------------------------------------------------------


def model_factory(backbone: str, attention: str = "none", **build_kwargs: Any) -> ModelFactory:
    """A factory that builds an arm for the data it meets (classes, channels, input size)."""

    def build(meta: DataMeta) -> nn.Module:
        return build_model(backbone, attention, num_classes=meta.num_classes, in_channels=meta.in_channels,
                           input_size=meta.input_size, **build_kwargs)

    return build


def initial_model(model: nn.Module | ModelFactory, meta: DataMeta, seed: int) -> nn.Module:
    """The run's model before its first step, and the global generator ready for dropout.

    A factory is called right after `torch.manual_seed(seed)`: build_model then derives each layer's
    weights from the seed and the layer's path, and draws exactly once from the global generator, so
    at one seed the arms of a backbone share initial weights in every shared layer and dropout
    starts from the same generator state. A module passed in is used as it is (trained in place).
    """
    torch.manual_seed(seed)
    return model if isinstance(model, nn.Module) else model(meta)


def make_optimizer(model: nn.Module, recipe: Recipe, device: torch.device) -> torch.optim.Optimizer:
    """Adam/AdamW/SGD with the fused kernels where torch has them (same maths, one kernel per step)."""
    params = [p for p in model.parameters() if p.requires_grad]
    fused = device.type in ("cuda", "cpu")
    if recipe.optimizer == "sgd":
        return torch.optim.SGD(params, lr=recipe.lr, momentum=recipe.momentum, nesterov=recipe.nesterov,
                               weight_decay=recipe.weight_decay, fused=fused)
    cls = torch.optim.Adam if recipe.optimizer == "adam" else torch.optim.AdamW
    return cls(params, lr=recipe.lr, weight_decay=recipe.weight_decay, fused=fused)


def make_scheduler(optimizer: torch.optim.Optimizer, recipe: Recipe, steps_per_epoch: int) -> Any:
    """None, or a scheduler; ReduceLROnPlateau steps per epoch, the others per step."""
    total = recipe.epochs * steps_per_epoch
    if recipe.scheduler == "plateau":
        return torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer, mode="min", patience=recipe.plateau_patience, factor=recipe.plateau_factor)
    if recipe.scheduler == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total)
    if recipe.scheduler == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=recipe.lr, total_steps=total)
    return None


@torch.no_grad()
def evaluate_images(model: nn.Module, split: Split, normalize: Normalize, *, batch_size: int = 1024,
                    channels_last: bool = True, precision: str = "fp32",
                    eager: nn.Module | None = None) -> tuple[float, float, torch.Tensor]:
    """(mean cross-entropy, accuracy in %, per-image correctness) over a whole split, one host sync.

    The correctness vector (bool, in split order, on the split's device) is what a paired
    per-image test between arms needs. When `model` is compiled, pass the same module uncompiled
    as `eager`: the last, smaller batch runs through it, so the compiled graph sees one shape only.
    """
    model.eval()
    device = split.images.device
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    hits = torch.empty(len(split), dtype=torch.bool, device=device)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    for start in range(0, len(split), batch_size):
        x = normalize(to_unit_float(split.images[start:start + batch_size])).contiguous(memory_format=fmt)
        y = split.labels[start:start + batch_size]
        run = eager if eager is not None and len(y) < batch_size else model
        with autocast(device, precision):
            out = run(x)
        loss_sum += F.cross_entropy(out.float(), y, reduction="sum")
        hits[start:start + batch_size] = out.argmax(1) == y
    loss, correct = torch.stack((loss_sum, hits.sum().to(torch.float64))).tolist()
    return loss / len(split), 100.0 * correct / len(split), hits


@dataclass
class TrainResult:
    """Everything a report needs from one run; `as_dict()` is JSON-ready. Accuracies are in %.

    `val_*` curves are what the run decided on (empty when the data has no validation split);
    `test_*` curves were only recorded (empty unless eval_split is 'test'). `eval_loss`/`eval_acc`
    are the curves of `eval_split`, the split the run's result (`final_acc`) comes from.
    """

    device: str
    n_params: int
    seed: int
    eval_split: str  # where final_acc comes from: 'val' (tuning) or 'test' (final numbers)
    epochs: int  # planned
    target_acc: float | None = None
    precision: str | None = None  # the precision actually trained in (fp32, bf16, fp16: Runtime.precision)
    warmup_s: float | None = None  # torch.compile's compilation before the first timed epoch; not in any time below
    nondeterministic_ops: list[str] | None = None  # deterministic runs: ops torch had no deterministic kernel for
    train_loss: list[float] = field(default_factory=list)
    train_acc: list[float] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    val_acc: list[float] = field(default_factory=list)
    test_loss: list[float | None] = field(default_factory=list)  # None: an epoch the test split was skipped
    test_acc: list[float | None] = field(default_factory=list)  # (Runtime.test_every_epoch off), never the last
    test_correct: str | None = None  # last epoch's per-test-image correctness (encode_correct), test order
    lr: list[float] = field(default_factory=list)  # at the start of each epoch
    epoch_time_s: list[float] = field(default_factory=list)  # training + evaluation, synchronised
    train_time_s: list[float] = field(default_factory=list)  # training only
    samples_per_s: list[float] = field(default_factory=list)  # training images / train_time_s
    iter_step: list[int] = field(default_factory=list)  # global step (1-based) of each kept loss
    iter_loss: list[float] = field(default_factory=list)
    peak_mem_mib: float | None = None  # CUDA only
    stopped_early: bool = False  # the epoch callback asked to stop

    @property
    def eval_loss(self) -> list[float | None]:
        return self.test_loss if self.eval_split == "test" else list(self.val_loss)

    @property
    def eval_acc(self) -> list[float | None]:
        return self.test_acc if self.eval_split == "test" else list(self.val_acc)

    @property
    def epochs_run(self) -> int:
        return len(self.train_loss)

    @property
    def final_acc(self) -> float | None:
        return self.eval_acc[-1] if self.eval_acc else None

    @property
    def best_acc(self) -> float | None:
        return max((a for a in self.eval_acc if a is not None), default=None)

    @property
    def best_epoch(self) -> int | None:
        best = self.best_acc
        return self.eval_acc.index(best) + 1 if best is not None else None

    @property
    def total_time_s(self) -> float:
        return sum(self.epoch_time_s)

    @property
    def throughput(self) -> float | None:
        """Training images per second over the whole run (evaluation excluded)."""
        seconds = sum(self.train_time_s)
        return sum(s * t for s, t in zip(self.samples_per_s, self.train_time_s)) / seconds if seconds else None

    @property
    def target_split(self) -> str | None:
        """The curve time to target reads: validation when the run has one (else the eval split's)."""
        if self.target_acc is None:
            return None
        return "val" if self.val_acc else self.eval_split

    def _to_target(self) -> tuple[int | None, float | None, bool | None]:
        if self.target_acc is None:
            return None, None, None
        curve = self.val_acc if self.target_split == "val" else self.eval_acc
        return time_to_target(curve, self.train_time_s, self.target_acc)

    @property
    def time_to_target_s(self) -> float | None:
        """Training seconds (evaluation excluded) until the target_split accuracy first reached
        target_acc; None when no target was set or it was never reached (see target_censored)."""
        return self._to_target()[1]

    @property
    def time_to_target_epochs(self) -> int | None:
        return self._to_target()[0]

    @property
    def target_censored(self) -> bool | None:
        """True when the target was never reached in epochs_run epochs (report "> epochs_run")."""
        return self._to_target()[2]

    def as_dict(self) -> dict[str, Any]:
        derived = {k: getattr(self, k) for k in (
            "eval_loss", "eval_acc", "epochs_run", "final_acc", "best_acc", "best_epoch", "total_time_s",
            "throughput", "time_to_target_s", "time_to_target_epochs", "target_censored", "target_split")}
        return {**asdict(self), **derived}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> TrainResult:
        return cls(**{f.name: d[f.name] for f in fields(cls) if f.name in d})


# ---------------------------------------------------------------------------------------------
# the loop
# ---------------------------------------------------------------------------------------------


def _check_finite(losses: torch.Tensor, epoch: int, first_step: int) -> float:
    """One host synchronisation: raise NonFiniteLossError at the first bad step, else the mean loss."""
    ok, mean = torch.stack((torch.isfinite(losses).all().to(losses.dtype), losses.mean())).tolist()
    if not ok:
        bad = int((~torch.isfinite(losses)).nonzero()[0])
        raise NonFiniteLossError(epoch, first_step + bad + 1, float(losses[bad]))
    return mean


def check_decisions(recipe: Recipe, data: Data, eval_split: str, on_epoch_end: EpochCallback | None) -> None:
    """Refuse a run that would have to decide on the test split: everything that steers a run reads
    the validation split, so without one only schedules that read no data can run."""
    check_choice("eval_split", eval_split, EVAL_SPLITS)
    if data.val is not None:
        return
    if eval_split == "val":
        data.split("val")  # raises: evaluation on 'val' needs a validation split
    check_schedule(recipe, has_validation=False)
    if on_epoch_end is not None:
        raise AblateError("an epoch callback can stop or prune a run, so it sees validation metrics only and needs "
                          "a validation split: set val_fraction > 0.")


def train(
    model: nn.Module | ModelFactory,
    data: Data,
    recipe: Recipe = Recipe(),
    *,
    seed: int = 0,
    runtime: Runtime = Runtime(),
    eval_split: str = "val",
    on_epoch_end: EpochCallback | None = None,
    target_acc: float | None = None,
    checkpoint_path: str | Path | None = None,
    progress: bool = False,
) -> TrainResult:
    """Train `model` (a module, trained in place, or a factory: see initial_model) on `data`.

    Validation decides, test is recorded. After every epoch the validation split (when the data has
    one) is evaluated, and the plateau schedule, `on_epoch_end` and time to target read it alone.
    `eval_split` names the split the run's result comes from: 'val' (tuning) or 'test' (final
    numbers); with 'test' the test split is also evaluated after every epoch and recorded
    (test_loss, test_acc, and the last epoch's per-image correctness), never acted on.
    `on_epoch_end(epoch, metrics)` runs after every epoch (1-based) with the training and
    validation numbers; returning True stops the run, and anything it raises (optuna.TrialPruned)
    propagates untouched. With `checkpoint_path`, state is saved after every epoch and an existing
    matching checkpoint is resumed (one line on stderr says from which epoch); a damaged one is moved
    aside and a checkpoint of this run from another device type or precision is replaced, the run
    starting from scratch (see ablate.resume). Raises NonFiniteLossError when the loss becomes
    NaN or infinite, AblateError when something would have to decide on test (see check_decisions),
    and DataDoesNotFit when the dataset does not fit on the device.
    """
    if runtime.deterministic:
        set_cublas_workspace()  # before any CUDA work: cuBLAS reads it once per process
    check_decisions(recipe, data, eval_split, on_epoch_end)
    check_range("target_acc", target_acc, 0.0, 100.0, low_open=True)
    device = resolve_device(runtime.device)
    with torch_settings(runtime, device):
        return _run(model, data, recipe, seed, runtime, device, eval_split, on_epoch_end, target_acc,
                    Path(checkpoint_path) if checkpoint_path is not None else None, progress)


def compile_model(net: nn.Module, runtime: Runtime) -> nn.Module:
    """`net` compiled for one run, with dynamo's caches emptied first and static shapes.

    Dynamo keeps compiled graphs per code object, and every arm runs the same forward code: without
    the reset, entries of earlier runs in the process pile up until the recompile limit (8) is hit,
    and from then on later arms run uncompiled with one warning only. A run feeds the compiled module
    full batches only (the last, smaller batch of an epoch or an evaluation goes through `net`), so
    with dynamic=False it compiles exactly one training and one evaluation graph.
    """
    import torch._dynamo

    torch._dynamo.reset()
    return torch.compile(net, backend=runtime.compile_backend, dynamic=False)


def _full_batch(split: Split | None, size: int, normalize: Normalize,
                fmt: torch.memory_format) -> torch.Tensor | None:
    """The first `size` images of `split`, shaped as the loop feeds them; None when the split has fewer
    (no full batch: the compiled graph is never called for it, so there is nothing to compile)."""
    if split is None or len(split) < size:
        return None
    return normalize(to_unit_float(split.images[:size])).contiguous(memory_format=fmt)


def _warm_up(fwd: nn.Module, net: nn.Module, train_x: torch.Tensor | None, eval_x: torch.Tensor | None,
             precision: str, device: torch.device) -> float:
    """Seconds to compile the training and evaluation graphs, before any epoch clock starts.

    One training forward + backward and one evaluation forward, as the loop and evaluate_images call
    them (grad mode, train/eval mode and autocast are part of what a graph is compiled for). Nothing
    a run depends on changes: weights, buffers (batch-norm statistics), gradients and the global
    generators (dropout) are put back; the data generators are not touched.
    """
    saved = {k: v.clone() for k, v in net.state_dict().items()}
    cpu_rng = torch.get_rng_state()
    cuda_rng = torch.cuda.get_rng_state(device) if device.type == "cuda" else None
    synchronize(device)
    start = time.perf_counter()
    if train_x is not None:
        net.train()
        with autocast(device, precision):
            out = fwd(train_x)
        out.float().sum().backward()
    if eval_x is not None:
        net.eval()
        with torch.no_grad(), autocast(device, precision):
            fwd(eval_x)
    synchronize(device)
    seconds = time.perf_counter() - start
    net.load_state_dict(saved)
    net.zero_grad(set_to_none=True)
    torch.set_rng_state(cpu_rng)
    if cuda_rng is not None:
        torch.cuda.set_rng_state(cuda_rng, device)
    return seconds


@dataclass
class _Loop:
    """One run's working parts, built once by `_set_up` (and again when a failed restore rolls back)."""

    net: nn.Module  # the model, trained in place
    fwd: nn.Module  # what full batches run through: `net`, or `net` compiled
    optimizer: torch.optim.Optimizer
    scheduler: Any  # None, per-step (cosine, onecycle) or per-epoch (plateau, on the validation loss)
    scaler: torch.amp.GradScaler  # fp16 gradients underflow unscaled; plain calls otherwise
    gen: torch.Generator  # shuffling and per-image augmentation, on the device
    host_gen: torch.Generator  # per-batch augmentation choices, drawn on the CPU
    device: torch.device
    precision: str
    fmt: torch.memory_format
    normalize: Normalize
    augment: Augment
    criterion: nn.Module
    steps: int  # per epoch

    @property
    def resumable(self) -> tuple[Any, ...]:
        """What a checkpoint snapshots and restores, in `ablate.resume`'s argument order."""
        return self.net, self.optimizer, self.scheduler, self.scaler, self.gen, self.host_gen, self.device


def _set_up(net: nn.Module, data: Data, recipe: Recipe, seed: int, runtime: Runtime,
            device: torch.device) -> _Loop:
    """The optimiser, schedule, scaler and data generators for `net` (already initialised and on `device`)."""
    optimizer = make_optimizer(net, recipe, device)
    steps = math.ceil(len(data.train) / recipe.batch_size)
    precision = runtime.precision(device)
    return _Loop(
        net=net,
        fwd=compile_model(net, runtime) if runtime.compile else net,  # full batches only; `net` runs the rest
        optimizer=optimizer,
        scheduler=make_scheduler(optimizer, recipe, steps),
        scaler=torch.amp.GradScaler(device.type, enabled=precision == "fp16"),
        gen=torch.Generator(device=device).manual_seed(seed),
        host_gen=torch.Generator().manual_seed(seed),
        device=device,
        precision=precision,
        fmt=runtime.memory_format,
        normalize=Normalize(data.meta.mean, data.meta.std, device),
        augment=data.config.augmentation(),
        criterion=nn.CrossEntropyLoss(label_smoothing=recipe.label_smoothing),
        steps=steps,
    )


def _train_epoch(loop: _Loop, split: Split, recipe: Recipe, runtime: Runtime, epoch: int,
                 bar: tqdm) -> tuple[list[float], int, float]:
    """One epoch over `split`: (per-step losses, correct predictions, seconds). The only host syncs are the
    periodic finite-loss checks (every `runtime.check_every` steps) and the clock's."""
    per_step = loop.scheduler is not None and recipe.scheduler != "plateau"
    params = [p for p in loop.net.parameters() if p.requires_grad]
    synchronize(loop.device)
    t0 = time.perf_counter()
    loop.net.train()
    order = torch.randperm(len(split), generator=loop.gen, device=loop.device)
    losses = torch.empty(loop.steps, device=loop.device)
    correct = torch.zeros((), dtype=torch.int64, device=loop.device)
    checked = 0
    for i in range(loop.steps):
        idx = order[i * recipe.batch_size:(i + 1) * recipe.batch_size]
        x = loop.normalize(loop.augment(split.images[idx], loop.gen, loop.host_gen)).contiguous(memory_format=loop.fmt)
        y = split.labels[idx]
        run = loop.fwd if len(idx) == recipe.batch_size else loop.net  # compiled graphs see full batches only
        with autocast(loop.device, loop.precision):
            out = run(x)
            loss = loop.criterion(out, y)
        loop.optimizer.zero_grad(set_to_none=True)
        loop.scaler.scale(loss).backward()  # scale, unscale_, step, update: plain calls when not fp16
        if recipe.grad_clip is not None:
            loop.scaler.unscale_(loop.optimizer)  # clip the true gradients, not the scaled ones
            nn.utils.clip_grad_norm_(params, recipe.grad_clip)
        loop.scaler.step(loop.optimizer)
        loop.scaler.update()
        if per_step:
            loop.scheduler.step()
        losses[i] = loss.detach()
        correct += (out.argmax(1) == y).sum()
        if (i + 1) % runtime.check_every == 0 or i + 1 == loop.steps:
            mean = _check_finite(losses[checked:i + 1], epoch, checked)
            bar.set_postfix(loss=f"{mean:.4f}", refresh=False)
            checked = i + 1
        bar.update()
        PREEMPTION.at_step(i + 1, loop.steps, t0)  # SIGTERM: stop now unless the epoch can finish in time
    synchronize(loop.device)
    return losses.tolist(), int(correct.item()), time.perf_counter() - t0


def _evaluate(loop: _Loop, runtime: Runtime, recipe: Recipe, val: Split | None, test: Split | None,
              result: TrainResult, test_now: bool = True) -> dict[str, str]:
    """Validation decides (the plateau step reads it), test is only recorded; both go into `result`.
    Without `test_now` the test split is skipped this epoch (None recorded: the curves stay one entry
    per epoch). Evaluation changes no state. Returns the figures a progress line shows."""
    def run_eval(split: Split) -> tuple[float, float, torch.Tensor]:
        return evaluate_images(loop.fwd, split, loop.normalize, batch_size=runtime.eval_batch_size,
                               channels_last=runtime.channels_last, precision=loop.precision,
                               eager=loop.net if runtime.compile else None)

    shown: dict[str, str] = {}
    if val is not None:
        val_loss, val_acc, _ = run_eval(val)
        result.val_loss.append(val_loss)
        result.val_acc.append(val_acc)
        shown["val_acc"] = f"{val_acc:.2f}"
        if recipe.scheduler == "plateau":
            loop.scheduler.step(val_loss)
    if test is not None and test_now:
        test_loss, test_acc, hits = run_eval(test)
        result.test_loss.append(test_loss)
        result.test_acc.append(test_acc)
        result.test_correct = encode_correct(hits)
        shown["test_acc"] = f"{test_acc:.2f}"
    elif test is not None:
        result.test_loss.append(None)
        result.test_acc.append(None)
    return shown


def _test_last_epoch(loop: _Loop, runtime: Runtime, recipe: Recipe, test: Split | None, result: TrainResult) -> None:
    """A run stopped before its last epoch with the test split skipped: evaluate it now, in place of
    the last epoch's None, so that a result always ends with a measured test accuracy."""
    if test is None or not result.test_acc or result.test_acc[-1] is not None:
        return
    result.test_loss.pop()
    result.test_acc.pop()
    _evaluate(loop, runtime, recipe, None, test, result)


def _record(result: TrainResult, loop: _Loop, recipe: Recipe, runtime: Runtime, epoch: int, n_train: int,
            step_losses: list[float], correct: int, lr: float, train_s: float, epoch_s: float) -> None:
    """Append one epoch's training figures and timings to `result`."""
    sizes = [recipe.batch_size] * (loop.steps - 1) + [n_train - recipe.batch_size * (loop.steps - 1)]
    result.train_loss.append(sum(value * n for value, n in zip(step_losses, sizes)) / n_train)
    result.train_acc.append(100.0 * correct / n_train)
    result.lr.append(lr)
    result.epoch_time_s.append(epoch_s)
    result.train_time_s.append(train_s)
    result.samples_per_s.append(n_train / train_s)
    for i, value in enumerate(step_losses):
        global_step = (epoch - 1) * loop.steps + i + 1
        if global_step % runtime.loss_every == 0:
            result.iter_step.append(global_step)
            result.iter_loss.append(value)
    if loop.device.type == "cuda":
        result.peak_mem_mib = torch.cuda.max_memory_allocated(loop.device) / 2**20


def _show_epoch(bar: tqdm, result: TrainResult, shown: dict[str, str], epoch: int, epochs: int, train_s: float,
                one_line: bool) -> None:
    """Close the epoch's bar; where no one watches a live bar (a log, CI), print one line instead."""
    bar.set_postfix(loss=f"{result.train_loss[-1]:.4f}", acc=f"{result.train_acc[-1]:.2f}", **shown)
    bar.close()
    if one_line:
        print(f"epoch {epoch}/{epochs}: loss {result.train_loss[-1]:.4f}, train_acc {result.train_acc[-1]:.2f}"
              + "".join(f", {k} {v}" for k, v in shown.items()) + f" ({train_s:.1f} s)", file=sys.stderr, flush=True)


def _resume(loop: _Loop, path: Path, fingerprint: str, data: Data, recipe: Recipe, seed: int, runtime: Runtime,
            result: TrainResult) -> tuple[_Loop, TrainResult, int]:
    """(loop, result, first epoch to train): from the checkpoint at `path` when it can be resumed, else
    the fresh start; a failed restore rolls back and gets fresh working parts (see ablate.resume)."""
    state = resumable_state(path, fingerprint)
    if state is None:
        return loop, result, 1
    if not restore_or_roll_back(path, state, *loop.resumable):
        return _set_up(loop.net, data, recipe, seed, runtime, loop.device), result, 1
    say(f"checkpoint {path}: resumed from epoch {state['epoch']}")
    resumed = TrainResult.from_dict({**state["result"], "device": result.device, "target_acc": result.target_acc})
    return loop, resumed, state["epoch"] + 1


def _run(model: nn.Module | ModelFactory, data: Data, recipe: Recipe, seed: int, runtime: Runtime,
         device: torch.device, eval_split: str, on_epoch_end: EpochCallback | None, target_acc: float | None,
         checkpoint_path: Path | None, progress: bool) -> TrainResult:
    # set-up: everything random below draws from the seed (initial_model: weights, then dropout's generator)
    net = initial_model(model, data.meta, seed).to(device=device, memory_format=runtime.memory_format)
    data = data.to(device)
    val = data.val  # decides (None only when nothing needs deciding: check_decisions)
    test = data.test if eval_split == "test" else None  # recorded only
    loop = _set_up(net, data, recipe, seed, runtime, device)
    result = TrainResult(device_name(device), sum(p.numel() for p in net.parameters()), seed, eval_split,
                         recipe.epochs, target_acc, precision=loop.precision)
    fingerprint = run_fingerprint(recipe, data, seed, eval_split, net, device, loop.precision)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    start = 1
    if checkpoint_path is not None:
        loop, result, start = _resume(loop, checkpoint_path, fingerprint, data, recipe, seed, runtime, result)

    with record_nondeterministic_ops() as alerts:
        if runtime.compile and start <= recipe.epochs:  # compile before the clock starts: epoch times stay the arm's
            train_x = _full_batch(data.train, recipe.batch_size, loop.normalize, loop.fmt)
            eval_x = _full_batch(val if val is not None else test, runtime.eval_batch_size, loop.normalize, loop.fmt)
            result.warmup_s = (result.warmup_s or 0.0) + _warm_up(loop.fwd, net, train_x, eval_x, loop.precision,
                                                                  device)
        live_bar = progress and sys.stderr.isatty()  # carriage-return bars only where a person watches
        for epoch in range(start, recipe.epochs + 1):
            lr = loop.optimizer.param_groups[0]["lr"]
            bar = tqdm(total=loop.steps, desc=f"epoch {epoch}/{recipe.epochs}", unit="step", disable=not live_bar,
                       dynamic_ncols=True)
            t0 = time.perf_counter()
            step_losses, correct, train_s = _train_epoch(loop, data.train, recipe, runtime, epoch, bar)
            shown = _evaluate(loop, runtime, recipe, val, test, result,
                              test_now=runtime.test_every_epoch or epoch == recipe.epochs)
            _record(result, loop, recipe, runtime, epoch, len(data.train), step_losses, correct, lr, train_s,
                    time.perf_counter() - t0)
            if runtime.deterministic:  # the ops that warned instead of running deterministically, resumed ones too
                result.nondeterministic_ops = list(dict.fromkeys([*(result.nondeterministic_ops or []), *alerts]))
            _show_epoch(bar, result, shown, epoch, recipe.epochs, train_s, progress and not live_bar)
            if checkpoint_path is not None:
                save_checkpoint(checkpoint_path, {"fingerprint": fingerprint, "epoch": epoch, "result": asdict(result),
                                                  **snapshot(*loop.resumable)})
            PREEMPTION.at_epoch_end()  # SIGTERM during this epoch: its checkpoint is saved, stop here
            if on_epoch_end is not None and on_epoch_end(epoch, _epoch_metrics(result)):
                result.stopped_early = True
                _test_last_epoch(loop, runtime, recipe, test, result)
                break
    return result


def _epoch_metrics(result: TrainResult) -> dict[str, Any]:
    """The last epoch's numbers as an epoch callback (a pruner, early stopping) sees them: training
    and validation only, so nothing that stops or prunes a run can read the test split."""
    return {
        "epoch": result.epochs_run,
        "train_loss": result.train_loss[-1],
        "train_acc": result.train_acc[-1],
        "val_loss": result.val_loss[-1],
        "val_acc": result.val_acc[-1],
        "lr": result.lr[-1],
        "epoch_time_s": result.epoch_time_s[-1],
        "train_time_s": result.train_time_s[-1],
        "samples_per_s": result.samples_per_s[-1],
    }
