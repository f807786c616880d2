"""`se`: Squeeze-and-Excitation (Hu et al. 2018), exactly the reference tutorial ref000's ChannelAttention.

Default layout: AdaptiveAvgPool -> Linear(C, C//r, no bias) -> ReLU -> Linear(C//r, C, no bias)
-> Sigmoid, then x * weights. Knobs reproduce SENet's ablations: the squeeze operator (avg/max)
and the excitation gate (sigmoid/tanh/relu). Parameter names are ref000's, so its weights load by name.
"""

from __future__ import annotations

import torch
from torch import nn

from .base import Attention, Knob, hidden_width

GATES: dict[str, type[nn.Module]] = {"sigmoid": nn.Sigmoid, "tanh": nn.Tanh, "relu": nn.ReLU}


class SqueezeExcite(Attention):
    name = "se"
    kind = "channel"
    uses_reduction = True
    knobs = (
        Knob("squeeze", "avg", choices=("avg", "max"), help="global pooling of the squeeze step"),
        Knob("gate", "sigmoid", choices=tuple(GATES), help="excitation non-linearity"),
    )

    def __init__(self, channels: int, reduction: int = 16, squeeze: str = "avg", gate: str = "sigmoid") -> None:
        super().__init__()
        self.hidden = hidden_width(channels, reduction)
        self.squeeze = nn.AdaptiveAvgPool2d(1) if squeeze == "avg" else nn.AdaptiveMaxPool2d(1)
        self.fc = nn.Sequential(
            nn.Linear(channels, self.hidden, bias=False),
            nn.ReLU(inplace=True),
            nn.Linear(self.hidden, channels, bias=False),
            GATES[gate](),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c = x.shape[:2]
        weights = self.fc(self.squeeze(x).view(b, c)).view(b, c, 1, 1)
        return x * weights

    def gate_modules(self) -> dict[str, nn.Module]:
        """The excitation output, B x C: in [0, 1] with the sigmoid gate, not with tanh or relu."""
        return {"channel": self.fc}
