"""`cbam`: Convolutional Block Attention Module (Woo et al. 2018): channel then spatial gate.

Knob `order` reproduces the paper's arrangement ablation: channel_first (the paper's choice),
spatial_first, or parallel (both gates computed from the input and applied together).
"""

from __future__ import annotations

import torch
from torch import nn

from .base import Attention, Knob
from .cam import POOLS, ChannelGate
from .sam import KERNELS, SpatialGate

ORDERS = ("channel_first", "spatial_first", "parallel")


class CBAM(Attention):
    name = "cbam"
    kind = "channel+spatial"
    uses_reduction = True
    knobs = (
        Knob("order", "channel_first", choices=ORDERS, help="arrangement of the two gates"),
        Knob("kernel", 7, choices=KERNELS, help="spatial conv kernel size"),
        Knob("pool", "avg+max", choices=POOLS, help="channel descriptors"),
    )

    def __init__(
        self, channels: int, reduction: int = 16, order: str = "channel_first", kernel: int = 7, pool: str = "avg+max"
    ) -> None:
        super().__init__()
        self.order = order
        self.channel = ChannelGate(channels, reduction, pool)
        self.spatial = SpatialGate(kernel)
        self.hidden = self.channel.reduced_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.order == "parallel":
            return x * self.channel(x) * self.spatial(x)
        if self.order == "spatial_first":
            x = x * self.spatial(x)
            return x * self.channel(x)
        x = x * self.channel(x)
        return x * self.spatial(x)

    def gate_modules(self) -> dict[str, nn.Module]:
        """Each gate as computed in `order`: the second one sees the input already weighted by the first."""
        return {"channel": self.channel, "spatial": self.spatial}
