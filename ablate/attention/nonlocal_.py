"""`nonlocal`: embedded-Gaussian non-local block (Wang et al. 2018).

theta/phi/g are 1x1 convs C -> C/r; the affinity softmax(theta^T phi) is HW x HW (a 1024 x 1024
matrix per image at 32 x 32: cost grows with the square of the map size); the output goes through a
1x1 conv and a BatchNorm whose weight starts at zero, so the residual block starts as identity.
It declares no gates: the affinity mixes positions and the result is added; nothing weights the input.
"""

from __future__ import annotations

import torch
from torch import nn

from .base import Attention, hidden_width


class NonLocal(Attention):
    name = "nonlocal"
    kind = "global context"
    uses_reduction = True

    def __init__(self, channels: int, reduction: int = 2) -> None:
        super().__init__()
        self.hidden = hidden_width(channels, reduction)
        self.theta = nn.Conv2d(channels, self.hidden, kernel_size=1)
        self.phi = nn.Conv2d(channels, self.hidden, kernel_size=1)
        self.g = nn.Conv2d(channels, self.hidden, kernel_size=1)
        self.out = nn.Conv2d(self.hidden, channels, kernel_size=1)
        self.bn = nn.BatchNorm2d(channels)
        nn.init.zeros_(self.bn.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, h, w = x.shape
        theta = self.theta(x).flatten(2).transpose(1, 2)  # B, HW, h
        phi = self.phi(x).flatten(2)  # B, h, HW
        g = self.g(x).flatten(2).transpose(1, 2)  # B, HW, h
        affinity = torch.softmax(torch.bmm(theta, phi), dim=-1)  # B, HW, HW
        y = torch.bmm(affinity, g).transpose(1, 2).reshape(b, self.hidden, h, w)
        return x + self.bn(self.out(y))
