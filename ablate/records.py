"""What a training run records that readers decode: per-image correctness bits, time to target.

The trainer writes these into a trial; the report reads them back. Both sides import this module,
so the report needs nothing of the training loop.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence

import numpy as np
import torch


def time_to_target(curve_acc: Sequence[float | None], epoch_seconds: Sequence[float],
                   target: float) -> tuple[int | None, float | None, bool]:
    """(epochs, seconds, censored) until `curve_acc` first reached `target`; the one shared definition.

    Pass the validation curve (when a run "got there" is read off validation, like every other
    decision) and training seconds per epoch (evaluation excluded: its cost depends on the split
    sizes, not on how fast the arm learns). A run
    that never reached the target is censored: (None, None, True), to be reported as "> N epochs"
    with N its epochs run, never as a time. An epoch without a measurement (None or NaN: a test split
    evaluated after the last epoch only) cannot be the one that got there.
    """
    elapsed = 0.0
    for epoch, (acc, seconds) in enumerate(zip(curve_acc, epoch_seconds), start=1):
        elapsed += seconds
        if acc is not None and acc >= target:
            return epoch, elapsed, False
    return None, None, True


def encode_correct(correct: torch.Tensor | np.ndarray) -> str:
    """Per-image correctness (bool, in split order) as base64 of numpy.packbits: 10000 images -> 1.7 kB."""
    bits = np.packbits(np.asarray(correct.cpu() if isinstance(correct, torch.Tensor) else correct, dtype=bool))
    return base64.b64encode(bits.tobytes()).decode("ascii")


def decode_correct(s: str, n: int) -> np.ndarray:
    """The inverse of encode_correct: a bool array of the `n` images' correctness, in split order."""
    return np.unpackbits(np.frombuffer(base64.b64decode(s), dtype=np.uint8), count=n).astype(bool)
