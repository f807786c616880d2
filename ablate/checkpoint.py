"""Checkpoints: plain tensors and Python values, loadable with weights_only=True.

A damaged file (truncated, overwritten, not a checkpoint) is one error type, UnreadableCheckpoint,
so the trainer can move it aside and restart its item and the report can skip its diagnostics.
Only ablate's own checkpoints are ever moved aside or overwritten: `is_ablate_checkpoint` knows one
even when it is truncated (torch's zip format, whose first member, the pickle, names the run's
fingerprint); any other file at a checkpoint path is refused (ablate.files.check_output_file).
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import AblateError
from .files import atomic_write

if TYPE_CHECKING:  # torch is imported where a checkpoint is written or read: recognising one needs none
    from torch import nn

CHECKPOINT_KEYS = ("fingerprint", "epoch", "result", "model", "optimizer", "scheduler", "rng_cpu", "rng_gen",
                   "rng_host", "rng_cuda")


class UnreadableCheckpoint(AblateError):
    """A checkpoint file that cannot be read: truncated, overwritten, not a checkpoint, keys missing."""


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """Write atomically (a crash mid-write never leaves a torn checkpoint)."""
    import torch

    atomic_write(path, lambda tmp: torch.save(state, tmp))


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """A checkpoint's contents; UnreadableCheckpoint when the file is not one (truncated, garbage, no weights).
    A missing file stays FileNotFoundError: that is a wrong path, not a damaged file."""
    if not Path(path).is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    import torch

    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        # Any type: a truncated, empty, foreign or garbage file reaches torch's weights-only unpickler, which
        # fails with whatever it meets (seen: OSError, RuntimeError, EOFError, UnpicklingError, BadZipFile,
        # KeyError, IndexError); each means "not a checkpoint", and torch's own text helps nobody here.
        kind = "not a PyTorch checkpoint" if not _is_torch_zip(Path(path)) else "a damaged PyTorch file"
        raise UnreadableCheckpoint(f"checkpoint {path} cannot be read ({kind}: {type(err).__name__})") from None
    if not isinstance(state, dict) or not isinstance(state.get("model"), dict):
        raise UnreadableCheckpoint(f"checkpoint {path} holds no model weights ({type(state).__name__})")
    return state


def load_weights(model: nn.Module, path: str | Path) -> nn.Module:
    """Load a checkpoint's model weights into `model` (for evaluation and visualisation)."""
    model.load_state_dict(load_checkpoint(path)["model"])
    return model


def _is_torch_zip(path: Path) -> bool:
    try:
        with open(path, "rb") as fh:
            return fh.read(4) == b"PK\x03\x04"
    except OSError:
        return False


def is_ablate_checkpoint(path: Path) -> bool:
    """A checkpoint ablate wrote, readable or damaged: torch's zip format (it starts with a zip member
    header) whose first member, the pickle, holds the keys "fingerprint" and "engine" of ablate's run
    fingerprint. Reads at most 1 MB: a 10 GB file is not loaded to find out."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(1 << 20)
    except OSError:
        return False
    return head.startswith(b"PK\x03\x04") and b"data.pkl" in head[:200] and b"fingerprint" in head \
        and b"engine" in head


def move_aside(path: Path) -> Path:
    """Rename a damaged checkpoint to `<name>.corrupt-<timestamp>`, kept for inspection; the new path."""
    stamp = time.strftime("%Y%m%d-%H%M%S") + f"-{time.time_ns() % 10**9:09d}"
    target = path.with_name(f"{path.name}.corrupt-{stamp}")
    os.replace(path, target)
    return target
