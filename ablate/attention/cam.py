"""`cam`: CBAM's channel attention module, exactly the reference tutorial ref002's ChannelAttention.

Average- and max-pooled descriptors go through one shared MLP (Linear with bias, ReLU, Linear with
bias), are summed and gated by a sigmoid. Knob `pool` is CBAM's channel-pooling ablation.
"""

from __future__ import annotations

import torch
from torch import nn

from .base import Attention, Knob, hidden_width

POOLS = ("avg+max", "avg", "max")


class ChannelGate(nn.Module):
    """The weights only (B, C, 1, 1); shared by `cam` and `cbam`."""

    def __init__(self, channels: int, reduction: int, pool: str = "avg+max") -> None:
        super().__init__()
        self.pool = pool
        self.reduced_channels = hidden_width(channels, reduction)
        self.avg_pool = nn.AdaptiveAvgPool2d(1)
        self.max_pool = nn.AdaptiveMaxPool2d(1)
        self.sigmoid = nn.Sigmoid()
        self.mlp = nn.Sequential(
            nn.Linear(channels, self.reduced_channels),
            nn.ReLU(inplace=True),
            nn.Linear(self.reduced_channels, channels),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c = x.shape[:2]
        logits = torch.zeros((), dtype=x.dtype, device=x.device)
        if "avg" in self.pool:
            logits = logits + self.mlp(self.avg_pool(x).view(b, c))
        if "max" in self.pool:
            logits = logits + self.mlp(self.max_pool(x).view(b, c))
        return self.sigmoid(logits).view(b, c, 1, 1)


class ChannelAttentionModule(Attention):
    name = "cam"
    kind = "channel"
    uses_reduction = True
    knobs = (Knob("pool", "avg+max", choices=POOLS, help="descriptors fed to the shared MLP"),)

    def __init__(self, channels: int, reduction: int = 16, pool: str = "avg+max") -> None:
        super().__init__()
        self.gate = ChannelGate(channels, reduction, pool)
        self.hidden = self.gate.reduced_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gate(x)

    def gate_modules(self) -> dict[str, nn.Module]:
        return {"channel": self.gate}
