"""The training loop and its timing: seed 000's recipe, run fast and measured honestly.

Defaults reproduce seed 000 (Adam 1e-3, batch 64, ReduceLROnPlateau with patience 3 and factor
0.5, crop/flip/jitter/rotate augmentation). What is different is how it runs: the data is already
on the device as uint8 (data.py), batches are augmented there (augment.py), and the loop never
waits for the device inside an epoch except for one non-finite-loss check every
`Runtime.check_every` steps. Epoch times are taken after a device synchronisation, so they are real.

Test data never decides. Seed 000 steps ReduceLROnPlateau on the test loss, which leaks the test
set into training. Here the validation split makes every decision (the plateau step, what an
epoch callback sees for pruning or early stopping, time to target), and the test split, when a
run reports on it, is evaluated after every epoch and only recorded. A plateau schedule without a
validation split is refused rather than quietly stepped on test.

Reproducibility and pairing: the run seed fixes model initialisation, dropout, shuffling and
augmentation; on CPU the same seed gives the same metrics. On CUDA set
`Runtime(deterministic=True)` for that (slower: cuDNN autotuning off). At one seed, arms are
paired: every layer a backbone's arms share starts from the same weights (build_model seeds each
layer by its path), and shuffling and augmentation come from generators that no model touches, so
every arm sees the same batches.
"""

from __future__ import annotations

import base64
import json
import math
import os
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from .augment import Augment, Normalize, to_unit_float
from .config import check_choice, check_range, check_types, config_from_dict
from .data import Data, DataMeta, Split
from .device import device_name, resolve_device
from .errors import AblateError
from .models import build_model
from .timing import autocast, available_cores, synchronize

OPTIMIZERS = ("adam", "adamw", "sgd")
SCHEDULERS = ("plateau", "cosine", "onecycle", "none")
EVAL_SPLITS = ("val", "test")
ENGINE_VERSION = 2  # part of a checkpoint's fingerprint: 2 = validation decides, paired initialisation

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
# what to run (Recipe) and where (Runtime)
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Recipe:
    """Training settings held fixed across arms; tuned ones come from Optuna through from_dict."""

    optimizer: str = "adam"
    lr: float = 1e-3
    weight_decay: float = 0.0
    momentum: float = 0.9  # sgd only
    nesterov: bool = False  # sgd only
    batch_size: int = 64
    epochs: int = 50
    scheduler: str = "plateau"  # stepped per epoch on the validation loss; cosine/onecycle per step
    plateau_patience: int = 3
    plateau_factor: float = 0.5
    label_smoothing: float = 0.0
    grad_clip: float | None = None  # max global gradient norm; None: no clipping

    def __post_init__(self) -> None:
        check_types(self)
        check_choice("optimizer", self.optimizer, OPTIMIZERS)
        check_range("lr", self.lr, 0.0, low_open=True)
        check_range("weight_decay", self.weight_decay, 0.0)
        check_range("momentum", self.momentum, 0.0, 1.0, high_open=True)
        if self.nesterov and (self.optimizer != "sgd" or self.momentum == 0):
            raise AblateError("nesterov needs optimizer 'sgd' with momentum > 0.")
        check_range("batch_size", self.batch_size, 1)
        check_range("epochs", self.epochs, 1)
        check_choice("scheduler", self.scheduler, SCHEDULERS)
        check_range("plateau_patience", self.plateau_patience, 0)
        check_range("plateau_factor", self.plateau_factor, 0.0, 1.0, low_open=True, high_open=True)
        check_range("label_smoothing", self.label_smoothing, 0.0, 1.0, high_open=True)
        check_range("grad_clip", self.grad_clip, 0.0, low_open=True)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], where: str = "") -> Recipe:
        return config_from_dict(cls, d, where)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Runtime:
    """Where and how fast to run; none of this is meant to change results beyond float noise."""

    device: str = "auto"  # auto (cuda when available), cpu, cuda, cuda:N
    amp: bool | None = None  # bf16 autocast; None: on for CUDA, off on CPU
    channels_last: bool = True  # NHWC activations: faster convolutions on CUDA and on x86 CPUs (oneDNN)
    compile: bool = False  # torch.compile the model (minutes of compile time; pays off on long GPU runs)
    deterministic: bool = False  # CUDA: deterministic algorithms, cuDNN autotuning off (CPU is deterministic)
    cudnn_benchmark: bool | None = None  # None: on for CUDA unless deterministic
    threads: int | None = None  # CPU threads for torch; None: the cores this process may use
    eval_batch_size: int = 1024
    check_every: int = 50  # steps between non-finite-loss checks (each is one device synchronisation)
    loss_every: int = 10  # keep every Nth per-iteration loss in the result

    def __post_init__(self) -> None:
        check_types(self)
        if self.device not in ("auto", "cpu", "cuda") and not (
            self.device.startswith("cuda:") and self.device[5:].isdigit()
        ):
            raise AblateError(f"device: unknown value {self.device!r}; allowed: auto, cpu, cuda, cuda:<index>.")
        for key in ("threads", "eval_batch_size", "check_every", "loss_every"):
            check_range(key, getattr(self, key), 1)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], where: str = "") -> Runtime:
        return config_from_dict(cls, d, where)

    def precision(self, device: torch.device) -> str:
        """'bf16' (autocast) as set, else on CUDA only (CPU bf16 changes numerics for little gain); else
        'fp32'. The words are ablate.timing's, so a cost row says the precision its arms were trained in."""
        on = self.amp if self.amp is not None else device.type == "cuda"
        return "bf16" if on else "fp32"

    @property
    def memory_format(self) -> torch.memory_format:
        return torch.channels_last if self.channels_last else torch.contiguous_format

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@contextmanager
def torch_settings(runtime: Runtime, device: torch.device) -> Iterator[None]:
    """Apply the runtime's process-wide torch switches for one run, and put them back afterwards."""
    saved = (torch.get_num_threads(), torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic,
             torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled())
    try:
        torch.set_num_threads(runtime.threads or available_cores())
        if device.type == "cuda":
            bench = runtime.cudnn_benchmark if runtime.cudnn_benchmark is not None else not runtime.deterministic
            torch.backends.cudnn.benchmark = bench
            torch.backends.cudnn.deterministic = runtime.deterministic
            if runtime.deterministic:
                os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # cuBLAS needs it for determinism
        if runtime.deterministic:
            torch.use_deterministic_algorithms(True, warn_only=True)
        yield
    finally:
        torch.set_num_threads(saved[0])
        torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic = saved[1], saved[2]
        if runtime.deterministic:  # only undo what was done: the call imports torch._inductor lazily,
            torch.use_deterministic_algorithms(saved[3], warn_only=saved[4])  # which an interrupt can break


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


def time_to_target(curve_acc: Sequence[float], epoch_seconds: Sequence[float],
                   target: float) -> tuple[int | None, float | None, bool]:
    """(epochs, seconds, censored) until `curve_acc` first reached `target`; the one shared definition.

    Pass the validation curve (when a run "got there" is read off validation, like every other
    decision) and training seconds per epoch (evaluation excluded: its cost depends on the split
    sizes, not on how fast the arm learns). A run
    that never reached the target is censored: (None, None, True), to be reported as "> N epochs"
    with N its epochs run, never as a time.
    """
    elapsed = 0.0
    for epoch, (acc, seconds) in enumerate(zip(curve_acc, epoch_seconds), start=1):
        elapsed += seconds
        if acc >= target:
            return epoch, elapsed, False
    return None, None, True


def encode_correct(correct: torch.Tensor | np.ndarray) -> str:
    """Per-image correctness (bool, in split order) as base64 of numpy.packbits: 10000 images -> 1.7 kB."""
    bits = np.packbits(np.asarray(correct.cpu() if isinstance(correct, torch.Tensor) else correct, dtype=bool))
    return base64.b64encode(bits.tobytes()).decode("ascii")


def decode_correct(s: str, n: int) -> np.ndarray:
    """The inverse of encode_correct: a bool array of the `n` images' correctness, in split order."""
    return np.unpackbits(np.frombuffer(base64.b64decode(s), dtype=np.uint8), count=n).astype(bool)


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
                    channels_last: bool = True, precision: str = "fp32") -> tuple[float, float, torch.Tensor]:
    """(mean cross-entropy, accuracy in %, per-image correctness) over a whole split, one host sync.

    The correctness vector (bool, in split order, on the split's device) is what a paired
    per-image test between arms needs.
    """
    model.eval()
    device = split.images.device
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    hits = torch.empty(len(split), dtype=torch.bool, device=device)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    for start in range(0, len(split), batch_size):
        x = normalize(to_unit_float(split.images[start:start + batch_size])).contiguous(memory_format=fmt)
        y = split.labels[start:start + batch_size]
        with autocast(device, precision):
            out = model(x)
        loss_sum += F.cross_entropy(out.float(), y, reduction="sum")
        hits[start:start + batch_size] = out.argmax(1) == y
    loss, correct = torch.stack((loss_sum, hits.sum().to(torch.float64))).tolist()
    return loss / len(split), 100.0 * correct / len(split), hits


def evaluate(model: nn.Module, split: Split, normalize: Normalize, *, batch_size: int = 1024,
             channels_last: bool = True, precision: str = "fp32") -> tuple[float, float]:
    """(mean cross-entropy, accuracy in %) over a whole split."""
    loss, acc, _ = evaluate_images(model, split, normalize, batch_size=batch_size, channels_last=channels_last,
                                   precision=precision)
    return loss, acc


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
    train_loss: list[float] = field(default_factory=list)
    train_acc: list[float] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    val_acc: list[float] = field(default_factory=list)
    test_loss: list[float] = field(default_factory=list)
    test_acc: list[float] = field(default_factory=list)
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
    def eval_loss(self) -> list[float]:
        return self.test_loss if self.eval_split == "test" else self.val_loss

    @property
    def eval_acc(self) -> list[float]:
        return self.test_acc if self.eval_split == "test" else self.val_acc

    @property
    def epochs_run(self) -> int:
        return len(self.train_loss)

    @property
    def final_acc(self) -> float | None:
        return self.eval_acc[-1] if self.eval_acc else None

    @property
    def best_acc(self) -> float | None:
        return max(self.eval_acc) if self.eval_acc else None

    @property
    def best_epoch(self) -> int | None:
        return self.eval_acc.index(max(self.eval_acc)) + 1 if self.eval_acc else None

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
# checkpoints: plain tensors and Python values, loadable with weights_only=True
# ---------------------------------------------------------------------------------------------


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """Write atomically (a crash mid-write never leaves a torn checkpoint)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    return torch.load(path, map_location="cpu", weights_only=True)


def load_weights(model: nn.Module, path: str | Path) -> nn.Module:
    """Load a checkpoint's model weights into `model` (for evaluation and visualisation)."""
    model.load_state_dict(load_checkpoint(path)["model"])
    return model


def _snapshot(net: nn.Module, optimizer: torch.optim.Optimizer, scheduler: Any, gen: torch.Generator,
              host_gen: torch.Generator, device: torch.device) -> dict[str, Any]:
    """Everything that makes epoch k+1 of a resumed run equal to that of an uninterrupted one."""
    return {
        "model": net.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict() if scheduler is not None else None,
        "rng_cpu": torch.get_rng_state(),
        "rng_gen": gen.get_state(),
        "rng_host": host_gen.get_state(),
        "rng_cuda": torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
    }


def _restore(state: Mapping[str, Any], net: nn.Module, optimizer: torch.optim.Optimizer, scheduler: Any,
             gen: torch.Generator, host_gen: torch.Generator, device: torch.device) -> None:
    net.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    if scheduler is not None:
        scheduler.load_state_dict(state["scheduler"])
    torch.set_rng_state(state["rng_cpu"])
    gen.set_state(state["rng_gen"])
    host_gen.set_state(state["rng_host"])
    if device.type == "cuda":
        torch.cuda.set_rng_state(state["rng_cuda"], device)


def _fingerprint(recipe: Recipe, data: Data, seed: int, eval_split: str, net: nn.Module) -> str:
    """What must match for a checkpoint to be resumed by this call."""
    return json.dumps({"engine": ENGINE_VERSION, "recipe": recipe.as_dict(), "data": data.config.as_dict(),
                       "seed": seed, "eval_split": eval_split, "model": type(net).__name__,
                       "params": sum(p.numel() for p in net.parameters())}, sort_keys=True)


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


def check_schedule(recipe: Recipe, has_validation: bool) -> None:
    """The plateau schedule steps on the validation loss: without a validation split it cannot run
    (stepping on test would leak it). The one rule, for study files and single runs alike."""
    if recipe.scheduler == "plateau" and not has_validation:
        raise AblateError("the plateau scheduler steps on the validation loss, so it needs a validation split: set "
                          "val_fraction > 0 (the test split never decides), or use scheduler cosine, onecycle or none.")


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
    matching checkpoint is resumed. Raises NonFiniteLossError when the loss becomes NaN or
    infinite, and AblateError when something would have to decide on test (see check_decisions).
    """
    check_decisions(recipe, data, eval_split, on_epoch_end)
    check_range("target_acc", target_acc, 0.0, 100.0, low_open=True)
    device = resolve_device(runtime.device)
    with torch_settings(runtime, device):
        return _run(model, data, recipe, seed, runtime, device, eval_split, on_epoch_end, target_acc,
                    Path(checkpoint_path) if checkpoint_path is not None else None, progress)


def _run(model: nn.Module | ModelFactory, data: Data, recipe: Recipe, seed: int, runtime: Runtime,
         device: torch.device, eval_split: str, on_epoch_end: EpochCallback | None, target_acc: float | None,
         checkpoint_path: Path | None, progress: bool) -> TrainResult:
    # --- set-up: everything random below draws from the seed
    net = initial_model(model, data.meta, seed)  # initialisation; then torch's global generator drives dropout
    gen = torch.Generator(device=device).manual_seed(seed)  # shuffling and per-image augmentation
    host_gen = torch.Generator().manual_seed(seed)  # per-batch augmentation choices, drawn on the CPU
    fmt, precision = runtime.memory_format, runtime.precision(device)
    net = net.to(device=device, memory_format=fmt)
    fwd = torch.compile(net) if runtime.compile else net
    data = data.to(device)
    train_split = data.train
    val_split = data.val  # decides (None only when nothing needs deciding: check_decisions)
    test_split = data.test if eval_split == "test" else None  # recorded only
    augment: Augment = data.config.augmentation()
    normalize = Normalize(data.meta.mean, data.meta.std, device)
    optimizer = make_optimizer(net, recipe, device)
    steps = math.ceil(len(train_split) / recipe.batch_size)
    scheduler = make_scheduler(optimizer, recipe, steps)
    per_step = scheduler is not None and recipe.scheduler != "plateau"
    criterion = nn.CrossEntropyLoss(label_smoothing=recipe.label_smoothing)
    params = [p for p in net.parameters() if p.requires_grad]
    result = TrainResult(device_name(device), sum(p.numel() for p in net.parameters()), seed, eval_split,
                         recipe.epochs, target_acc)
    fingerprint = _fingerprint(recipe, data, seed, eval_split, net)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)

    def run_eval(split: Split) -> tuple[float, float, torch.Tensor]:
        return evaluate_images(fwd, split, normalize, batch_size=runtime.eval_batch_size,
                               channels_last=runtime.channels_last, precision=precision)

    start = 1
    if checkpoint_path is not None and checkpoint_path.exists():
        state = load_checkpoint(checkpoint_path)
        if state["fingerprint"] != fingerprint:
            raise AblateError(f"checkpoint {checkpoint_path} belongs to another run (recipe, data, seed, model or "
                              f"ablate version differ); delete it or choose another path.")
        _restore(state, net, optimizer, scheduler, gen, host_gen, device)
        result = TrainResult.from_dict({**state["result"], "device": result.device, "target_acc": target_acc})
        start = state["epoch"] + 1

    for epoch in range(start, recipe.epochs + 1):
        # --- train one epoch; the only host syncs are the periodic finite-loss checks
        lr = optimizer.param_groups[0]["lr"]
        bar = tqdm(total=steps, desc=f"epoch {epoch}/{recipe.epochs}", unit="step", disable=not progress,
                   dynamic_ncols=True)
        synchronize(device)
        t0 = time.perf_counter()
        net.train()
        order = torch.randperm(len(train_split), generator=gen, device=device)
        losses = torch.empty(steps, device=device)
        correct = torch.zeros((), dtype=torch.int64, device=device)
        checked = 0
        for i in range(steps):
            idx = order[i * recipe.batch_size:(i + 1) * recipe.batch_size]
            x = normalize(augment(train_split.images[idx], gen, host_gen)).contiguous(memory_format=fmt)
            y = train_split.labels[idx]
            with autocast(device, precision):
                out = fwd(x)
                loss = criterion(out, y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if recipe.grad_clip is not None:
                nn.utils.clip_grad_norm_(params, recipe.grad_clip)
            optimizer.step()
            if per_step:
                scheduler.step()
            losses[i] = loss.detach()
            correct += (out.argmax(1) == y).sum()
            if (i + 1) % runtime.check_every == 0 or i + 1 == steps:
                mean = _check_finite(losses[checked:i + 1], epoch, checked)
                bar.set_postfix(loss=f"{mean:.4f}", refresh=False)
                checked = i + 1
            bar.update()
        synchronize(device)
        t1 = time.perf_counter()

        # --- evaluate: validation decides, test is only recorded (evaluation changes no state)
        shown: dict[str, str] = {}
        if val_split is not None:
            val_loss, val_acc, _ = run_eval(val_split)
            result.val_loss.append(val_loss)
            result.val_acc.append(val_acc)
            shown["val_acc"] = f"{val_acc:.2f}"
            if recipe.scheduler == "plateau":
                scheduler.step(val_loss)
        if test_split is not None:
            test_loss, test_acc, hits = run_eval(test_split)
            result.test_loss.append(test_loss)
            result.test_acc.append(test_acc)
            result.test_correct = encode_correct(hits)
            shown["test_acc"] = f"{test_acc:.2f}"
        t2 = time.perf_counter()

        # --- record
        step_losses = losses.tolist()
        sizes = [recipe.batch_size] * (steps - 1) + [len(train_split) - recipe.batch_size * (steps - 1)]
        result.train_loss.append(sum(value * n for value, n in zip(step_losses, sizes)) / len(train_split))
        result.train_acc.append(100.0 * correct.item() / len(train_split))
        result.lr.append(lr)
        result.epoch_time_s.append(t2 - t0)
        result.train_time_s.append(t1 - t0)
        result.samples_per_s.append(len(train_split) / (t1 - t0))
        for i, value in enumerate(step_losses):
            global_step = (epoch - 1) * steps + i + 1
            if global_step % runtime.loss_every == 0:
                result.iter_step.append(global_step)
                result.iter_loss.append(value)
        if device.type == "cuda":
            result.peak_mem_mib = torch.cuda.max_memory_allocated(device) / 2**20
        bar.set_postfix(loss=f"{result.train_loss[-1]:.4f}", acc=f"{result.train_acc[-1]:.2f}", **shown)
        bar.close()

        if checkpoint_path is not None:
            save_checkpoint(checkpoint_path, {"fingerprint": fingerprint, "epoch": epoch, "result": asdict(result),
                                              **_snapshot(net, optimizer, scheduler, gen, host_gen, device)})
        if on_epoch_end is not None and on_epoch_end(epoch, _epoch_metrics(result)):
            result.stopped_early = True
            break
    return result


def _epoch_metrics(result: TrainResult) -> dict[str, Any]:
    """The last epoch's numbers as an epoch callback (a pruner, early stopping) sees them: training
    and validation only, so nothing that stops or prunes a run can read the test split. `eval_*`
    repeat the validation numbers for callbacks written against the older keys."""
    return {
        "epoch": result.epochs_run,
        "train_loss": result.train_loss[-1],
        "train_acc": result.train_acc[-1],
        "val_loss": result.val_loss[-1],
        "val_acc": result.val_acc[-1],
        "eval_loss": result.val_loss[-1],
        "eval_acc": result.val_acc[-1],
        "eval_split": "val",
        "lr": result.lr[-1],
        "epoch_time_s": result.epoch_time_s[-1],
        "train_time_s": result.train_time_s[-1],
        "samples_per_s": result.samples_per_s[-1],
    }
