"""tinynet: a small backbone written against ablate's Backbone protocol (two stages of conv-BN-ReLU,
each followed by a 2x2 max-pool, then global pooling and a linear head).

A backbone tells ablate three things: its stages (`stage_channels`), where each of its positions puts
modules (`sites`: stage, slot, module path, channels, map size) and how to build itself with a module
at exactly those sites (`build`, taking each module from `ctx.module_at(path)`). Building every layer
through `ctx.layer(path, ...)` gives paired initialisation: every arm starts from the same weights in
the layers it shares with the baseline.
"""

from __future__ import annotations

from collections import OrderedDict
from types import MappingProxyType

from torch import nn

from ablate.models import Backbone, BuildContext, Built, Site


class TinyNet(Backbone):
    name = "tinynet"
    description = "example plugin: 2 x (conv3x3-BN-ReLU, max-pool) at 16/32 channels, global pool, linear"
    heads = ("linear",)
    positions = MappingProxyType({"stage_end": "after each stage's ReLU, before its max-pool",
                                  "after_pool": "after each stage's max-pool"})
    default_position = "stage_end"
    widths = (16, 32)

    @property
    def stage_channels(self) -> tuple[int, ...]:
        return self.widths

    def layout(self) -> str:
        return " / ".join(f"conv{w}" for w in self.widths) + " (each + max-pool)"

    def sites(self, position: str, *, bn: bool = True, in_channels: int = 3, input_size: int = 32) -> tuple[Site, ...]:
        self.check_position(position)
        out, size = [], input_size
        for s, width in enumerate(self.widths, start=1):
            h = size if position == "stage_end" else size // 2
            out.append(Site(s, position, f"features.stage{s}.attn", width, h, h))
            size //= 2
        return tuple(out)

    def build(self, ctx: BuildContext, *, head: str, bn: bool, num_classes: int, in_channels: int,
              input_size: int) -> Built:
        stages, channels = [], in_channels
        for s, width in enumerate(self.widths, start=1):
            p = f"features.stage{s}"
            layers = [("conv", ctx.layer(f"{p}.conv", lambda c=channels, w=width: nn.Conv2d(c, w, 3, padding=1))),
                      ("bn", ctx.layer(f"{p}.bn", lambda w=width: nn.BatchNorm2d(w))),
                      ("relu", nn.ReLU())]
            for slot in ("stage_end", "after_pool"):  # the module, if this arm has one, goes where its slot says
                attn = ctx.module_at(f"{p}.attn", slot)
                if attn is not None:
                    layers.append(("attn", attn))
                if slot == "stage_end":
                    layers.append(("pool", nn.MaxPool2d(2)))
            stages.append((f"stage{s}", nn.Sequential(OrderedDict(layers))))
            channels = width
        head_module = ctx.layer("head", lambda: nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(1),
                                                              nn.Linear(channels, num_classes)))
        stage_paths = tuple(f"features.stage{s}.pool" for s in range(1, len(self.widths) + 1))
        return Built(nn.Sequential(OrderedDict(stages)), head_module, stage_paths)
