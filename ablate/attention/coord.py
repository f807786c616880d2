"""`coord`: Coordinate Attention (Hou et al. 2021).

Pools along each spatial axis separately (H x 1 and 1 x W), encodes the concatenation with a shared
1x1 conv + BN + h-swish, then splits back into an H-gate and a W-gate. Bottleneck width is
max(1, C // r) exactly (the paper floors it at 8; ablate records the real width instead).
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor, nn

from .base import Attention, hidden_width


class CoordAttention(Attention):
    name = "coord"
    kind = "channel+spatial"
    uses_reduction = True

    def __init__(self, channels: int, reduction: int = 16) -> None:
        super().__init__()
        self.hidden = hidden_width(channels, reduction)
        self.conv1 = nn.Conv2d(channels, self.hidden, kernel_size=1)
        self.bn1 = nn.BatchNorm2d(self.hidden)
        self.act = nn.Hardswish()
        self.conv_h = nn.Conv2d(self.hidden, channels, kernel_size=1)
        self.conv_w = nn.Conv2d(self.hidden, channels, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[2:]
        x_h = x.mean(dim=3, keepdim=True)  # B, C, H, 1
        x_w = x.mean(dim=2, keepdim=True).transpose(2, 3)  # B, C, W, 1
        y = self.act(self.bn1(self.conv1(torch.cat([x_h, x_w], dim=2))))
        y_h, y_w = torch.split(y, [h, w], dim=2)
        a_h = torch.sigmoid(self.conv_h(y_h))  # B, C, H, 1
        a_w = torch.sigmoid(self.conv_w(y_w.transpose(2, 3)))  # B, C, 1, W
        return x * a_h * a_w

    def gate_modules(self) -> dict[str, nn.Module]:
        """The two axis convs: their outputs are the logits of the H-gate and the W-gate."""
        return {"h": self.conv_h, "w": self.conv_w}

    def gate_maps(self, outputs: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """The spatial map a_h * a_w (B x C x H x W) averaged over channels; it declares no channel map."""
        return {"spatial": (torch.sigmoid(outputs["h"]) * torch.sigmoid(outputs["w"])).mean(1)}
