"""`sam`: CBAM's spatial attention module (Woo et al. 2018).

Channel-wise mean and max give a 2xHxW map; a k x k conv (no bias) and a sigmoid turn it into one
weight per position. Knob `kernel` is CBAM's 3 vs 7 ablation.
"""

from __future__ import annotations

import torch
from torch import nn

from .base import Attention, Knob

KERNELS = (7, 3)


class SpatialGate(nn.Module):
    """The weights only (B, 1, H, W); shared by `sam` and `cbam`."""

    def __init__(self, kernel: int = 7) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 1, kernel_size=kernel, padding=kernel // 2, bias=False)
        self.sigmoid = nn.Sigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = torch.cat([x.mean(dim=1, keepdim=True), x.amax(dim=1, keepdim=True)], dim=1)
        return self.sigmoid(self.conv(pooled))


class SpatialAttentionModule(Attention):
    name = "sam"
    kind = "spatial"
    knobs = (Knob("kernel", 7, choices=KERNELS, help="spatial conv kernel size"),)

    def __init__(self, channels: int, kernel: int = 7) -> None:
        super().__init__()
        self.gate = SpatialGate(kernel)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gate(x)

    def gate_modules(self) -> dict[str, nn.Module]:
        return {"spatial": self.gate}
