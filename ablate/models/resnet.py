"""Residual backbones: the CIFAR ResNets of He et al. (2016) and torchvision's ImageNet ResNets.

`resnet20` / `resnet56`: 3x3 stem (16 channels, no max-pool), three stages of 16/32/64 channels with
3 / 9 basic blocks each, global average pool, linear head; the shortcut is option A of the paper
(identity, with stride-2 subsampling and zero-padded extra channels where the width doubles: no
parameters), which gives table 6's 0.27M and 0.85M parameters.
`resnet18` / `resnet50`: torchvision's layout (7x7 stem + max-pool, basic blocks [2, 2, 2, 2] /
bottlenecks [3, 4, 6, 3] with the stride on the 3x3 conv, 1x1-conv + BN projection shortcuts),
with torchvision's module names under `features.` and the classifier as `head.fc`, so a torchvision
state_dict loads by renaming keys (`fc.*` -> `head.fc.*`, everything else -> `features.*`).

Positions are SENet's integration points (Hu et al., fig. 5), one module in every residual block:
`standard` on the residual branch after its last BN, before the addition; `pre` on the residual
branch before its first conv (the shortcut still gets the block's input); `post` after the addition
and its ReLU; `identity` on the shortcut (after the projection, where there is one), in parallel with
the residual branch. All four build different models. standard, post and identity see the block's
output channels and map, so their modules have equal parameter counts; pre sees the block's input,
which differs in the first block of every stage that changes width.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from types import MappingProxyType

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import AblateError
from .backbones import Backbone, BuildContext, Built, Site

RESIDUAL_POSITIONS: Mapping[str, str] = MappingProxyType({
    "standard": "residual branch after its last BN, before the addition (SENet's SE block)",
    "pre": "residual branch before its first conv; the shortcut gets the block's input unchanged (SE-PRE)",
    "post": "after the addition and its ReLU (SE-POST)",
    "identity": "on the shortcut (after its projection, if any), parallel to the residual branch (SE-Identity)",
})
ATTN_NAMES: Mapping[str, str] = MappingProxyType(
    {"standard": "attn", "pre": "attn_pre", "post": "attn_post", "identity": "attn_identity"})


class PadShortcut(nn.Module):
    """Option A shortcut: subsample by `stride`, append `extra` zero channels. No parameters."""

    def __init__(self, stride: int, extra: int) -> None:
        super().__init__()
        self.stride, self.extra = stride, extra

    def extra_repr(self) -> str:
        return f"stride={self.stride}, extra={self.extra}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.pad(x[:, :, :: self.stride, :: self.stride], (0, 0, 0, 0, 0, self.extra))


class ResidualBlock(nn.Module):
    """A basic block (conv3x3-BN-ReLU-conv3x3-BN) or a bottleneck (1x1-3x3-1x1, conv3/bn3 set), plus its
    shortcut and the attention modules at whichever of the four sites the arm uses (None elsewhere)."""

    def __init__(self, layers: Mapping[str, nn.Module | None], attention: Mapping[str, nn.Module | None]) -> None:
        super().__init__()
        self.register_module("attn_pre", attention.get("pre"))
        for name in ("conv1", "bn1", "conv2", "bn2", "conv3", "bn3"):
            self.register_module(name, layers.get(name))
        self.register_module("attn", attention.get("standard"))
        self.relu = nn.ReLU(inplace=True)
        self.register_module("downsample", layers.get("downsample"))
        self.register_module("attn_identity", attention.get("identity"))
        self.register_module("attn_post", attention.get("post"))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        if self.attn_identity is not None:
            shortcut = self.attn_identity(shortcut)
        out = x if self.attn_pre is None else self.attn_pre(x)
        out = self.bn2(self.conv2(self.relu(self.bn1(self.conv1(out)))))
        if self.conv3 is not None:
            out = self.bn3(self.conv3(self.relu(out)))
        if self.attn is not None:
            out = self.attn(out)
        out = self.relu(out + shortcut)
        return out if self.attn_post is None else self.attn_post(out)


@dataclass(frozen=True)
class BlockGeometry:
    """One residual block's place and shapes: what both the sites and the build read."""

    stage: int
    index: int  # within the stage, 0-based
    c_in: int
    planes: int  # the width of the branch's 3x3 conv
    c_out: int
    stride: int
    size_in: int
    size_out: int


def _conv(c_in: int, c_out: int, kernel: int, stride: int = 1) -> nn.Conv2d:
    """A bias-free conv with He initialisation (fan_out), as torchvision and He et al. initialise them."""
    conv = nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=kernel // 2, bias=False)
    nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
    return conv


class ResNet(Backbone):
    """A ResNet described by its block type, stage depths and widths, stem and shortcut type."""

    positions = RESIDUAL_POSITIONS
    default_position = "standard"
    heads = ("linear",)

    def __init__(self, name: str, block: str, depths: tuple[int, ...], widths: tuple[int, ...], stem: str,
                 shortcut: str, description: str) -> None:
        if block not in ("basic", "bottleneck") or stem not in ("cifar", "imagenet") or \
                shortcut not in ("zero_pad", "projection") or len(depths) != len(widths) or not depths:
            raise AblateError(f"ResNet {name!r}: block basic|bottleneck, stem cifar|imagenet, shortcut "
                              "zero_pad|projection, and one width per stage depth.")
        self.name, self.block, self.depths, self.widths = name, block, depths, widths
        self.stem, self.shortcut, self.description = stem, shortcut, description
        self.expansion = 4 if block == "bottleneck" else 1

    @property
    def stage_channels(self) -> tuple[int, ...]:
        return tuple(w * self.expansion for w in self.widths)

    def layout(self) -> str:
        stages = " / ".join(f"{d}x{w * self.expansion}" for d, w in zip(self.depths, self.widths))
        shortcut = "option A: zero-padded identity, no parameters" if self.shortcut == "zero_pad" else \
            "1x1 conv + BN projection"
        return f"{self.block} blocks per stage x out channels: {stages}; {self.stem} stem; shortcut {shortcut}"

    def _stem_size(self, input_size: int) -> int:
        if self.stem == "cifar":
            return input_size
        return ((input_size - 1) // 2) // 2 + 1  # 7x7 stride-2 conv, then 3x3 stride-2 max-pool

    def geometry(self, input_size: int) -> Iterator[BlockGeometry]:
        c_in, size = self.widths[0], self._stem_size(input_size)
        for s, (depth, planes) in enumerate(zip(self.depths, self.widths), start=1):
            for i in range(depth):
                stride = 2 if s > 1 and i == 0 else 1
                out = (size - 1) // stride + 1
                yield BlockGeometry(s, i, c_in, planes, planes * self.expansion, stride, size, out)
                c_in, size = planes * self.expansion, out

    def sites(self, position: str, *, bn: bool = True, in_channels: int = 3, input_size: int = 32) -> tuple[Site, ...]:
        self.check_position(position)
        out = []
        for g in self.geometry(input_size):
            c, h = (g.c_in, g.size_in) if position == "pre" else (g.c_out, g.size_out)
            out.append(Site(g.stage, (g.index, position), f"features.layer{g.stage}.{g.index}.{ATTN_NAMES[position]}",
                            c, h, h))
        return tuple(out)

    def _block(self, ctx: BuildContext, g: BlockGeometry) -> ResidualBlock:
        prefix = f"features.layer{g.stage}.{g.index}"
        if self.block == "basic":
            shapes = {"conv1": (g.c_in, g.planes, 3, g.stride), "conv2": (g.planes, g.planes, 3, 1)}
        else:
            shapes = {"conv1": (g.c_in, g.planes, 1, 1), "conv2": (g.planes, g.planes, 3, g.stride),
                      "conv3": (g.planes, g.c_out, 1, 1)}
        layers: dict[str, nn.Module | None] = {}
        for name, (a, b, k, stride) in shapes.items():
            layers[name] = ctx.layer(f"{prefix}.{name}", lambda a=a, b=b, k=k, s=stride: _conv(a, b, k, s))
            bn = name.replace("conv", "bn")
            layers[bn] = ctx.layer(f"{prefix}.{bn}", lambda b=b: nn.BatchNorm2d(b))
        if g.stride != 1 or g.c_in != g.c_out:
            if self.shortcut == "zero_pad":
                layers["downsample"] = PadShortcut(g.stride, g.c_out - g.c_in)
            else:
                layers["downsample"] = nn.Sequential(
                    ctx.layer(f"{prefix}.downsample.0", lambda: _conv(g.c_in, g.c_out, 1, g.stride)),
                    ctx.layer(f"{prefix}.downsample.1", lambda: nn.BatchNorm2d(g.c_out)))
        attention = {p: ctx.module_at(f"{prefix}.{name}") for p, name in ATTN_NAMES.items()}
        return ResidualBlock(layers, attention)

    def build(self, ctx: BuildContext, *, head: str, bn: bool, num_classes: int, in_channels: int,
              input_size: int) -> Built:
        width = self.widths[0]
        kernel, stride = (3, 1) if self.stem == "cifar" else (7, 2)
        stem: list[tuple[str, nn.Module]] = [
            ("conv1", ctx.layer("features.conv1", lambda: _conv(in_channels, width, kernel, stride))),
            ("bn1", ctx.layer("features.bn1", lambda: nn.BatchNorm2d(width))),
            ("relu", nn.ReLU(inplace=True)),
        ]
        if self.stem == "imagenet":
            stem.append(("maxpool", nn.MaxPool2d(kernel_size=3, stride=2, padding=1)))
        stages: dict[int, list[nn.Module]] = {}
        for g in self.geometry(input_size):
            stages.setdefault(g.stage, []).append(self._block(ctx, g))
        layers = [(f"layer{s}", nn.Sequential(*blocks)) for s, blocks in stages.items()]
        channels = self.stage_channels[-1]
        head_module = ctx.layer("head", lambda: nn.Sequential(OrderedDict(
            [("avgpool", nn.AdaptiveAvgPool2d(1)), ("flatten", nn.Flatten(1)),
             ("fc", nn.Linear(channels, num_classes))])))
        stage_paths = tuple(f"features.layer{s}.{len(blocks) - 1}" for s, blocks in stages.items())
        return Built(nn.Sequential(OrderedDict(stem + layers)), head_module, stage_paths)


RESNET20 = ResNet("resnet20", "basic", (3, 3, 3), (16, 32, 64), "cifar", "zero_pad",
                  "He et al. CIFAR ResNet-20 (0.27M): 3x3 stem, 3 stages x 3 basic blocks, option A shortcuts")
RESNET56 = ResNet("resnet56", "basic", (9, 9, 9), (16, 32, 64), "cifar", "zero_pad",
                  "He et al. CIFAR ResNet-56 (0.85M): 3x3 stem, 3 stages x 9 basic blocks, option A shortcuts")
RESNET18 = ResNet("resnet18", "basic", (2, 2, 2, 2), (64, 128, 256, 512), "imagenet", "projection",
                  "torchvision ResNet-18 (11.7M at 1000 classes): 7x7 stem + max-pool, basic blocks")
RESNET50 = ResNet("resnet50", "bottleneck", (3, 4, 6, 3), (64, 128, 256, 512), "imagenet", "projection",
                  "torchvision ResNet-50 (25.6M at 1000 classes): 7x7 stem + max-pool, bottlenecks (stride on 3x3)")
