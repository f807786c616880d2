"""`simam`: SimAM (Yang et al. 2021), parameter-free.

Each activation's weight is sigmoid of its inverse energy d / (4 (v + lambda)) + 0.5, where d is
its squared distance to the channel mean and v the channel variance. No parameters, no ratio; its
whole cost is elementwise work that fvcore's default op set counts as zero.
It declares no gates: its weight is per element (neither a channel nor a spatial map) and comes from
no submodule that could be hooked.
"""

from __future__ import annotations

import torch

from .base import Attention, Knob, is_positive_number


class SimAM(Attention):
    name = "simam"
    kind = "parameter-free"
    knobs = (Knob("lambda", 1e-4, check=is_positive_number, allowed="a number > 0", help="energy regulariser"),)

    def __init__(self, channels: int, **knobs: float) -> None:
        super().__init__()
        self.e_lambda = float(knobs.get("lambda", 1e-4))  # `lambda` is a Python keyword

    def extra_repr(self) -> str:
        return f"lambda={self.e_lambda}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = x.shape[2] * x.shape[3] - 1
        d = (x - x.mean(dim=(2, 3), keepdim=True)).pow(2)
        v = d.sum(dim=(2, 3), keepdim=True) / max(n, 1)
        return x * torch.sigmoid(d / (4 * (v + self.e_lambda)) + 0.5)
