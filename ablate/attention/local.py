"""`local`: the reference tutorial ref003's LocalAttention, exactly.

A channel branch (GAP -> 1x1 conv C->C/r -> ReLU -> 1x1 conv -> C -> Sigmoid) and a spatial branch
(1x1 conv C->C/r -> ReLU -> 1x1 conv -> 1 -> Sigmoid), both with bias, multiplied: x * (ch * sp).
ref003's default ratio is 8.
"""

from __future__ import annotations

import torch
from torch import nn

from .base import Attention, hidden_width


class LocalAttention(Attention):
    name = "local"
    kind = "channel+spatial"
    uses_reduction = True

    def __init__(self, channels: int, reduction: int = 8) -> None:
        super().__init__()
        self.hidden = hidden_width(channels, reduction)
        self.channel_attention = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),
            nn.Conv2d(channels, self.hidden, kernel_size=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(self.hidden, channels, kernel_size=1),
            nn.Sigmoid(),
        )
        self.spatial_attention = nn.Sequential(
            nn.Conv2d(channels, self.hidden, kernel_size=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(self.hidden, 1, kernel_size=1),
            nn.Sigmoid(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * (self.channel_attention(x) * self.spatial_attention(x))

    def gate_modules(self) -> dict[str, nn.Module]:
        return {"channel": self.channel_attention, "spatial": self.spatial_attention}
