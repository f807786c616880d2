"""`none`: the baseline. An identity so every arm has the same model structure; it declares no gates."""

from __future__ import annotations

import torch

from .base import Attention


class NoAttention(Attention):
    name = "none"
    kind = "none"

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.channels = channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x
