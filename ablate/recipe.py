"""What to run (Recipe) and where (Runtime): the settings of one training run, typed and checked.

Checking them needs no torch (a study file is refused before torch is imported); the methods that
turn a setting into a torch object import it.

The study file, `ablate train`, the benchmark and the trainer all read these; none of them needs
the training loop to know what a valid setting is, so they live apart from it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from .bounds import MAX_EPOCHS, MAX_THREADS
from .config import check_choice, check_range, check_types, config_from_dict
from .device import check_device_setting
from .errors import AblateError

if TYPE_CHECKING:
    import torch

OPTIMIZERS = ("adam", "adamw", "sgd")
SCHEDULERS = ("plateau", "cosine", "onecycle", "none")
EVAL_SPLITS = ("val", "test")  # the split a run reports on; validation always decides


@dataclass(frozen=True)
class Recipe:
    """Training settings held fixed across arms; tuned ones come from Optuna through from_dict."""

    optimizer: str = "adam"
    lr: float = 1e-3
    weight_decay: float = 0.0
    momentum: float = 0.9  # sgd only
    nesterov: bool = False  # sgd only
    batch_size: int = 64
    epochs: int = 50  # at most 10,000
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
        check_range("epochs", self.epochs, 1, MAX_EPOCHS)  # why 10,000: ablate.bounds
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
    amp: bool | None = None  # mixed precision (see precision()); None: on for CUDA, off on CPU
    channels_last: bool = True  # NHWC activations: faster convolutions on CUDA and on x86 CPUs (oneDNN)
    compile: bool = False  # torch.compile the model (minutes of compile time; pays off on long GPU runs)
    compile_backend: str = "inductor"  # torch.compile's backend ("eager" compiles nothing: for tests)
    deterministic: bool = False  # CUDA: deterministic algorithms, cuDNN autotuning off (CPU is deterministic)
    cudnn_benchmark: bool | None = None  # None: on for CUDA unless deterministic
    threads: int | None = None  # CPU threads for torch, up to max(256, cores); None: the cores this process may use
    eval_batch_size: int = 1024
    test_every_epoch: bool = True  # final runs: the test split after every epoch (a curve) or after the last only
    check_every: int = 50  # steps between non-finite-loss checks (each is one device synchronisation)
    loss_every: int = 10  # keep every Nth per-iteration loss in the result

    def __post_init__(self) -> None:
        check_types(self)
        check_device_setting("device", self.device)
        check_range("threads", self.threads, 1, MAX_THREADS)
        for key in ("eval_batch_size", "check_every", "loss_every"):
            check_range(key, getattr(self, key), 1)
        if self.compile:
            import torch._dynamo  # only a run that compiles pays for the import

            check_choice("compile_backend", self.compile_backend, torch._dynamo.list_backends(exclude_tags=()))

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], where: str = "") -> Runtime:
        return config_from_dict(cls, d, where)

    def precision(self, device: torch.device) -> str:
        """The precision a run on `device` trains in: with mixed precision (`amp`, by default on CUDA only:
        CPU bf16 changes numerics for little gain) 'bf16' where the hardware has it, else 'fp16' (with
        loss scaling; pre-Ampere GPUs only emulate bf16, slowly); without, 'fp32'. The words are
        ablate.timing's, so a cost row says the precision its arms were trained in."""
        from .precision import mixed_precision  # torch: not needed to check a setting

        on = self.amp if self.amp is not None else device.type == "cuda"
        return mixed_precision(device) if on else "fp32"

    @property
    def memory_format(self) -> torch.memory_format:
        import torch

        return torch.channels_last if self.channels_last else torch.contiguous_format

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def check_schedule(recipe: Recipe, has_validation: bool) -> None:
    """The plateau schedule steps on the validation loss: without a validation split it cannot run
    (stepping on test would leak it). The one rule, for study files and single runs alike."""
    if recipe.scheduler == "plateau" and not has_validation:
        raise AblateError("the plateau scheduler steps on the validation loss, so it needs a validation split: set "
                          "val_fraction > 0 (the test split never decides), or use scheduler cosine, onecycle or none.")
