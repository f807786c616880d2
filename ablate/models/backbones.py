"""Backbone layouts: conv widths per block, and the classifier heads.

`cnn` is ref000's 3-block CNN (32/64/128, fc 512, dropout 0.5); `vgg16` is configuration D.
Heads: `mlp` (ref000: flatten -> 512 -> classes), `cifar` (global pool -> 512 -> classes, the
usual VGG for 32x32), `imagenet` (torchvision / ref003: AdaptiveAvgPool 7x7, 25088-4096-4096).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from torch import nn

from ..errors import AblateError, unknown


@dataclass(frozen=True)
class Backbone:
    name: str
    blocks: tuple[tuple[int, ...], ...]  # output channels of each conv unit, per block
    heads: tuple[str, ...]  # allowed heads; the first is the default
    description: str
    inplace_relu: bool  # ReLU(inplace=True), as the reference tutorial of this backbone builds it

    @property
    def default_head(self) -> str:
        return self.heads[0]


BACKBONES: Mapping[str, Backbone] = MappingProxyType(
    {
        "cnn": Backbone("cnn", ((32,), (64,), (128,)), ("mlp",), "ref000 CNN: 3 x (conv3x3-BN-ReLU-pool), fc 512",
                        inplace_relu=False),
        "vgg16": Backbone(
            "vgg16",
            ((64, 64), (128, 128), (256, 256, 256), (512, 512, 512), (512, 512, 512)),
            ("cifar", "imagenet"),
            "VGG16 (cfg D), BN by default; head cifar (512 -> classes) or imagenet (ref003)",
            inplace_relu=True,
        ),
    }
)


def list_backbones() -> list[str]:
    return list(BACKBONES)


def get_backbone(name: str) -> Backbone:
    if name not in BACKBONES:
        raise unknown("backbone", name, BACKBONES)
    return BACKBONES[name]


def make_head(backbone: Backbone, head: str, channels: int, size: tuple[int, int], num_classes: int) -> nn.Sequential:
    """The classifier after the last block; `size` is the final feature-map (H, W)."""
    if head not in backbone.heads:
        raise unknown(f"head for backbone {backbone.name!r}", head, backbone.heads)
    if head == "mlp":
        return nn.Sequential(
            nn.Flatten(1),
            nn.Linear(channels * size[0] * size[1], 512),
            nn.ReLU(),
            nn.Dropout(p=0.5),
            nn.Linear(512, num_classes),
        )
    if head == "cifar":
        return nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(1), nn.Linear(channels, num_classes))
    if head == "imagenet":
        return nn.Sequential(
            nn.AdaptiveAvgPool2d((7, 7)),
            nn.Flatten(1),
            nn.Linear(channels * 7 * 7, 4096),
            nn.ReLU(inplace=True),
            nn.Dropout(),
            nn.Linear(4096, 4096),
            nn.ReLU(inplace=True),
            nn.Dropout(),
            nn.Linear(4096, num_classes),
        )
    raise AblateError(f"head {head!r} is declared but not built")  # unreachable: heads are declared above
