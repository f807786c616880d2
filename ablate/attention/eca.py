"""`eca`: Efficient Channel Attention (Wang et al. 2020).

GAP, then a 1-D conv of size k across channels (no bottleneck, no bias), then a sigmoid. Knob `k`:
'adaptive' uses the paper's k = |log2(C)/gamma + b/gamma| rounded up to odd (gamma=2, b=1);
an odd integer fixes it (the paper's fixed-vs-adaptive ablation).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .base import Attention, Knob, is_odd_positive_int


def adaptive_kernel(channels: int, gamma: int = 2, b: int = 1) -> int:
    t = int(abs((math.log2(channels) + b) / gamma))
    return t if t % 2 else t + 1


def _valid_k(value: object) -> bool:
    return value == "adaptive" or is_odd_positive_int(value)


class ECA(Attention):
    name = "eca"
    kind = "channel"
    knobs = (Knob("k", "adaptive", check=_valid_k, allowed="'adaptive' or an odd integer >= 1", help="1-D kernel"),)

    def __init__(self, channels: int, k: int | str = "adaptive") -> None:
        super().__init__()
        self.k = adaptive_kernel(channels) if k == "adaptive" else int(k)
        self.avg_pool = nn.AdaptiveAvgPool2d(1)
        self.conv = nn.Conv1d(1, 1, kernel_size=self.k, padding=(self.k - 1) // 2, bias=False)
        self.sigmoid = nn.Sigmoid()

    def extra_repr(self) -> str:
        return f"k={self.k}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c = x.shape[:2]
        y = self.conv(self.avg_pool(x).view(b, 1, c))
        return x * self.sigmoid(y).view(b, c, 1, 1)

    def gate_modules(self) -> dict[str, nn.Module]:
        return {"channel": self.sigmoid}  # B x 1 x C
