"""`gc`: Global Context block (Cao et al. 2019, GCNet).

Context modelling: a 1x1 conv to one logit per position, softmax over positions, weighted sum of
features. Transform: 1x1 conv C->C/r, LayerNorm, ReLU, 1x1 conv -> C (zero-initialised, as GCNet,
so the block starts as identity). Fusion by addition.
It declares no gates: its softmax only pools the context, and nothing multiplies the input.
"""

from __future__ import annotations

import torch
from torch import nn

from .base import Attention, hidden_width


class GlobalContext(Attention):
    name = "gc"
    kind = "global context"
    uses_reduction = True

    def __init__(self, channels: int, reduction: int = 16) -> None:
        super().__init__()
        self.hidden = hidden_width(channels, reduction)
        self.conv_mask = nn.Conv2d(channels, 1, kernel_size=1)
        self.transform = nn.Sequential(
            nn.Conv2d(channels, self.hidden, kernel_size=1),
            nn.LayerNorm([self.hidden, 1, 1]),
            nn.ReLU(inplace=True),
            nn.Conv2d(self.hidden, channels, kernel_size=1),
        )
        nn.init.zeros_(self.transform[-1].weight)
        nn.init.zeros_(self.transform[-1].bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c = x.shape[:2]
        weights = torch.softmax(self.conv_mask(x).view(b, 1, -1), dim=-1)  # B, 1, HW
        context = torch.bmm(x.view(b, c, -1), weights.transpose(1, 2)).view(b, c, 1, 1)
        return x + self.transform(context)
