"""Resuming a training run from its checkpoint: what must match, what is saved, and what a failed restore undoes.

A run saves a snapshot after every epoch (`snapshot`) under a fingerprint of the run and of where it
runs (`run_fingerprint`). A later call with the same fingerprint resumes after the saved epoch; one
that differs only in placement (device type, precision) starts from scratch; one of another run is
refused (`resumable_state`). A checkpoint that loads but cannot be restored into this run's objects
is moved aside and the run starts from scratch, from the state it had before the attempt
(`restore_or_roll_back`): a model the caller passed in is trained in place, so the weights the restore
already wrote into it must be put back. The file format itself is `ablate.checkpoint`.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from .checkpoint import CHECKPOINT_KEYS, UnreadableCheckpoint, is_ablate_checkpoint, load_checkpoint, move_aside
from .errors import AblateError
from .files import check_output_file

if TYPE_CHECKING:
    from .datasets import Data
    from .recipe import Recipe

ENGINE_VERSION = 2  # part of a checkpoint's fingerprint: 2 = validation decides, paired initialisation
PLACEMENT_KEYS = ("device", "precision")  # fingerprint keys that say where a run ran, not which run it is

# What loading a readable checkpoint's contents into a run's objects raises when they do not fit:
# load_state_dict on size or key mismatches (RuntimeError), a missing entry (KeyError), an optimizer's
# parameter groups that differ (ValueError), a value of the wrong type (TypeError, AttributeError),
# a generator state of the wrong size (RuntimeError), a list entry missing (IndexError).
RESTORE_ERRORS: tuple[type[Exception], ...] = (RuntimeError, KeyError, ValueError, TypeError, AttributeError,
                                               IndexError)


def say(text: str) -> None:
    """One line on stderr: what happened to a run's checkpoint, for the person watching."""
    print(text, file=sys.stderr, flush=True)


def run_fingerprint(recipe: Recipe, data: Data, seed: int, eval_split: str, net: nn.Module, device: torch.device,
                    precision: str) -> str:
    """What must match for a checkpoint to be resumed by this call: the run (recipe, data, seed, model,
    engine) and where it runs (PLACEMENT_KEYS: device type and precision; generators and numerics
    differ between them)."""
    return json.dumps({"engine": ENGINE_VERSION, "recipe": recipe.as_dict(), "data": data.config.as_dict(),
                       "seed": seed, "eval_split": eval_split, "model": type(net).__name__,
                       "params": sum(p.numel() for p in net.parameters()), "device": device.type,
                       "precision": precision}, sort_keys=True)


def snapshot(net: nn.Module, optimizer: torch.optim.Optimizer, scheduler: Any, scaler: torch.amp.GradScaler,
             gen: torch.Generator, host_gen: torch.Generator, device: torch.device) -> dict[str, Any]:
    """Everything that makes epoch k+1 of a resumed run equal to that of an uninterrupted one."""
    return {
        "model": net.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict() if scheduler is not None else None,
        "scaler": scaler.state_dict(),  # fp16 loss scale ({} when not scaling)
        "device_type": device.type,  # the generators' states below only fit a generator of this type
        "rng_cpu": torch.get_rng_state(),
        "rng_gen": gen.get_state(),
        "rng_host": host_gen.get_state(),
        "rng_cuda": torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
    }


def restore(state: Mapping[str, Any], net: nn.Module, optimizer: torch.optim.Optimizer, scheduler: Any,
            scaler: torch.amp.GradScaler, gen: torch.Generator, host_gen: torch.Generator,
            device: torch.device) -> None:
    """Load a snapshot. Device generators are restored only from a snapshot of the same device type: a
    CPU generator's state (5056 bytes) is no CUDA generator's (16 bytes), and setting it fails."""
    net.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    if scheduler is not None:
        scheduler.load_state_dict(state["scheduler"])
    if state.get("scaler"):
        scaler.load_state_dict(state["scaler"])
    torch.set_rng_state(state["rng_cpu"])
    host_gen.set_state(state["rng_host"])
    if state.get("device_type", "cpu" if state["rng_cuda"] is None else "cuda") == device.type:
        gen.set_state(state["rng_gen"])
        if device.type == "cuda":
            torch.cuda.set_rng_state(state["rng_cuda"], device)


def restore_or_roll_back(path: Path, state: Mapping[str, Any], net: nn.Module, optimizer: torch.optim.Optimizer,
                         scheduler: Any, scaler: torch.amp.GradScaler, gen: torch.Generator,
                         host_gen: torch.Generator, device: torch.device) -> bool:
    """Restore `state`; True when it worked. When it fails part-way, the model's weights and the global
    generators are put back as they were before the attempt, the file is moved aside, and False comes
    back: the caller must then build a fresh optimizer, schedule, scaler and data generators."""
    weights = {k: v.clone() for k, v in net.state_dict().items()}
    cpu_rng = torch.get_rng_state()
    cuda_rng = torch.cuda.get_rng_state(device) if device.type == "cuda" else None
    try:
        restore(state, net, optimizer, scheduler, scaler, gen, host_gen, device)
        return True
    except RESTORE_ERRORS as err:  # readable, but damaged inside
        net.load_state_dict(weights)
        torch.set_rng_state(cpu_rng)
        if cuda_rng is not None:
            torch.cuda.set_rng_state(cuda_rng, device)
        say(f"checkpoint {path} cannot be restored ({type(err).__name__}); moved aside to {move_aside(path)}; "
            "this run starts from scratch")
        return False


def _placement_only(saved: str, current: str) -> bool:
    """True when two fingerprints name the same run and differ only in where it ran (PLACEMENT_KEYS)."""
    try:
        old, new = json.loads(saved), json.loads(current)
    except (TypeError, ValueError):
        return False
    if not isinstance(old, dict):
        return False
    return {k: v for k, v in old.items() if k not in PLACEMENT_KEYS} == \
        {k: v for k, v in new.items() if k not in PLACEMENT_KEYS}


def resumable_state(path: Path, fingerprint: str) -> dict[str, Any] | None:
    """The checkpoint at `path` when this run can resume from it, else None (the run starts from scratch).

    A file that is not ablate's checkpoint (a user's file, a folder) is refused untouched; ablate's own
    damaged checkpoint is moved aside (see move_aside), and a checkpoint of this run made on another device
    type or in another precision is left to be overwritten, each with one line on stderr. A checkpoint
    of another run (recipe, data, seed or model differ) is refused: the path is probably a mistake.
    """
    if not path.exists():
        return None
    check_output_file(path, "checkpoint", "checkpoint", is_ablate_checkpoint)  # never a user's file or a folder
    try:
        state = load_checkpoint(path)
        missing = [k for k in CHECKPOINT_KEYS if k not in state]
        if missing:
            raise UnreadableCheckpoint(f"checkpoint {path} lacks {', '.join(missing)}")
    except UnreadableCheckpoint as err:  # ablate's own, damaged: kept for inspection
        say(f"{err}; moved aside to {move_aside(path)}; this run starts from scratch")
        return None
    if state["fingerprint"] == fingerprint:
        return state
    if _placement_only(state["fingerprint"], fingerprint):
        old, new = json.loads(state["fingerprint"]), json.loads(fingerprint)
        where = (f"was made on {old['device']} in {old['precision']}" if all(k in old for k in PLACEMENT_KEYS)
                 else "records no device type or precision (an older ablate)")
        say(f"checkpoint {path} {where}; this run is on {new['device']} in {new['precision']} and cannot resume "
            "from it, so it starts from scratch")
        return None
    raise AblateError(f"checkpoint {path} belongs to another run (recipe, data, seed, model or ablate version "
                      f"differ); delete it or choose another path.")
