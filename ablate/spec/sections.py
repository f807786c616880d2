"""The study file's own sections: tuning (and its search space), measure, and the seed plan.

Each is a frozen config dataclass read by ablate.config's `config_from_dict`, checked in its
`__post_init__` with ablate.config's checks, so a section built in code is checked the same way.
None of this imports torch.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..bounds import MAX_EPOCHS, MAX_THREADS, MAX_TIMED_BLOCKS, MAX_TRIALS, TIMED_BLOCKS
from ..config import (
    INT64_MAX,
    ConfigError,
    check_choice,
    check_range,
    check_types,
    config_from_dict,
)
from ..device import check_device_setting
from ..errors import AblateError
from ..names import PRECISIONS

SCOPES = ("per_arm", "baseline", "per_attention")
PRUNERS = ("median", "hyperband", "none")
PARAM_KEYS = ("low", "high", "log", "choices")
SEED_PLAN_KEYS = ("min", "max", "target_ci_pp")
MEASURE_PRECISIONS = ("as_trained", *PRECISIONS)
MAX_SEED = INT64_MAX  # torch.manual_seed's range
MAX_SAMPLER_SEED = 2**32 - 1  # numpy's RandomState, behind Optuna's TPE sampler
MAX_PLAN_SEEDS = 1000  # seeds per arm: seeds.max of a precision-targeted plan, or the length of a list of seeds


@dataclass(frozen=True)
class Param:
    """One tuned hyperparameter: a float/int range (optionally log) or a list of choices."""

    name: str = ""  # the recipe key; set from the key of tuning.space
    low: float | None = None
    high: float | None = None
    log: bool = False
    integer: bool = False  # drawn as an integer (the recipe field is an int)
    choices: tuple[Any, ...] | None = None

    def __post_init__(self) -> None:
        check_types(self)
        if self.choices is not None:
            if self.low is not None or self.high is not None:
                raise AblateError("give either choices or low/high, not both.")
            if not self.choices:
                raise ConfigError("choices", "must not be empty.")
            return
        if self.low is None or self.high is None:
            raise AblateError("a range needs both low and high (or use choices).")
        if self.low > self.high:
            raise AblateError(f"low ({self.low:g}) must be <= high ({self.high:g}).")
        if self.log and self.low <= 0:
            raise ConfigError("low", "a log-scale range needs low > 0.")

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], where: str = "") -> Param:
        return config_from_dict(cls, d, where, keys=PARAM_KEYS)

    def values(self) -> tuple[Any, ...]:
        """The choices, or the range's ends (as the recipe field's type): each must be a valid recipe value."""
        if self.choices is not None:
            return self.choices
        assert self.low is not None and self.high is not None
        return (int(self.low), int(self.high)) if self.integer else (self.low, self.high)


@dataclass(frozen=True)
class Tuning:
    """Optuna tuning on the validation split before the final runs; the tuned values replace the recipe's."""

    enabled: bool = False  # default: true when a tuning section is given
    scope: str = "baseline"  # baseline: each backbone's 'none' arm, shared; per_attention; per_arm
    n_trials: int = 8  # trials per tuning group, at most 10,000
    epochs: int = 2  # epochs per tuning trial, at most 10,000
    sampler_seed: int = 0  # TPE sampler seed, 0 to 2**32-1
    pruner: str = "median"  # stops unpromising trials early; none keeps every trial
    space: tuple[Param, ...] = ()  # recipe key -> {low, high, log} or {choices}

    def __post_init__(self) -> None:
        check_types(self)
        check_choice("scope", self.scope, SCOPES)
        check_range("n_trials", self.n_trials, 1, MAX_TRIALS)
        check_range("epochs", self.epochs, 1, MAX_EPOCHS)
        check_range("sampler_seed", self.sampler_seed, 0, MAX_SAMPLER_SEED)
        check_choice("pruner", self.pruner, PRUNERS)
        if self.enabled and not self.space:
            raise ConfigError("space", "tuning is enabled but the search space is empty.")

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], where: str = "") -> Tuning:
        return config_from_dict(cls, d, where)


@dataclass(frozen=True)
class Measure:
    """How the profile phase times arms (see ablate.timing): interleaved rounds, fixed threads."""

    device: str = "auto"
    batch_sizes: tuple[int, ...] = (1, 64)
    block_time: float = 0.05  # seconds per timed block
    rounds: int = 10  # interleaved rounds per backbone, batch size and training step; at most 33,333 (x 3 blocks)
    threads: int = 1  # torch intra-op threads while timing, up to max(256, cores); 1 is reproducible on shared hosts
    train_step: bool = True  # also time a training step at the recipe's batch size
    precision: str = "as_trained"  # as_trained | fp32 | bf16 | fp16
    channels_last: bool | None = None  # None: as trained
    cuda_graph: bool = False  # CUDA: batch latency replayed from captured CUDA graphs

    def __post_init__(self) -> None:
        check_types(self)
        check_device_setting("device", self.device)
        if not self.batch_sizes:
            raise ConfigError("batch_sizes", "must not be empty.")
        for i, size in enumerate(self.batch_sizes):
            check_range(f"batch_sizes[{i}]", size, 1)
        check_range("block_time", self.block_time, 0.0, 60.0, low_open=True)
        check_range("rounds", self.rounds, 1)
        if self.rounds * TIMED_BLOCKS > MAX_TIMED_BLOCKS:  # the bound `ablate profile` puts on --rounds x --blocks
            raise ConfigError("rounds", f"{self.rounds:,} rounds x {TIMED_BLOCKS} timed blocks = "
                                        f"{self.rounds * TIMED_BLOCKS:,} blocks per arm and timing; at most "
                                        f"{MAX_TIMED_BLOCKS:,}, so rounds <= {MAX_TIMED_BLOCKS // TIMED_BLOCKS:,}.")
        check_range("threads", self.threads, 1, MAX_THREADS)
        check_choice("precision", self.precision, MEASURE_PRECISIONS)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], where: str = "") -> Measure:
        return config_from_dict(cls, d, where)


@dataclass(frozen=True)
class SeedPlan:
    """Precision-targeted seeds: every arm gets `min`; arms whose paired-difference CI half-width
    still exceeds `target_ci_pp` get more, up to `max`. Stops on precision, never on p-values."""

    min: int
    max: int
    target_ci_pp: float
