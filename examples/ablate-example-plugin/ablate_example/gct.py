"""Gated Channel Transformation (Yang et al., CVPR 2020), written as any user would write a module.

Per channel: an embedding s = alpha * ||x||_2 over the map (or alpha * mean |x| with mode l1), a
channel normalisation n = gamma * s / sqrt(mean_c(s^2) + eps), and the gate 1 + tanh(n + beta). Three
parameters per channel, no reduction ratio. gamma and beta start at 0, so the module starts as the
identity (the paper's initialisation).

What ablate needs from it: an nn.Module whose constructor takes the channel count first and its
declared knobs by keyword, and a forward that keeps the input shape. `name`, `kind`, `knobs` and
`uses_reduction` are read when present; subclassing ablate.attention.Attention is optional (it adds
the gate declarations the report's diagnostics draw).
"""

from __future__ import annotations

import torch
from torch import nn

from ablate.attention import Knob


class GCT(nn.Module):
    name = "gct"
    kind = "channel"
    uses_reduction = False
    knobs = (Knob("mode", "l2", choices=("l2", "l1"), help="the channel embedding's norm"),)

    def __init__(self, channels: int, mode: str = "l2", eps: float = 1e-5) -> None:
        super().__init__()
        self.alpha = nn.Parameter(torch.ones(1, channels, 1, 1))
        self.gamma = nn.Parameter(torch.zeros(1, channels, 1, 1))
        self.beta = nn.Parameter(torch.zeros(1, channels, 1, 1))
        self.mode, self.eps = mode, eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.mode == "l2":
            embedding = (x.pow(2).sum(dim=(2, 3), keepdim=True) + self.eps).sqrt() * self.alpha
            norm = self.gamma / (embedding.pow(2).mean(dim=1, keepdim=True) + self.eps).sqrt()
        else:
            embedding = x.abs().mean(dim=(2, 3), keepdim=True) * self.alpha
            norm = self.gamma / (embedding.abs().mean(dim=1, keepdim=True) + self.eps)
        return x * (1.0 + torch.tanh(embedding * norm + self.beta))
