"""Plain conv-block backbones: `cnn` (ref000's 3-block CNN) and `vgg16` (configuration D).

A block is n conv units (conv3x3 -> [BN] -> ReLU) followed by a 2x2 max-pool. A position resolves
to a set of slots per block (unit index, the op the module follows). The unit-level positions
(after_conv, after_bn, after_relu) act on the block's last unit, so they put one module per stage
like block_end and after_pool: a position ablation then compares placements at equal module count.
every_conv puts one after every unit's ReLU (VGG's 2-3 per block). Two positions that resolve to the
same slots build the same model, and the grid keeps only one of them.

Heads: `mlp` (ref000: flatten -> 512 -> classes), `cifar` (global pool -> 512 -> classes, the usual
VGG for 32x32), `imagenet` (torchvision / ref003: AdaptiveAvgPool 7x7, 25088-4096-4096).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Mapping
from functools import partial
from types import MappingProxyType

from torch import nn

from ..errors import AblateError
from .backbones import Backbone, BuildContext, Built, Site, check_size

Slot = tuple[int, str]  # (unit index within the block, "conv" | "bn" | "relu" | "pool")

CONV_POSITIONS: Mapping[str, str] = MappingProxyType({
    "after_conv": "conv -> attn -> bn -> relu (last conv unit of each block)",
    "after_bn": "conv -> bn -> attn -> relu (last conv unit of each block; needs BatchNorm)",
    "after_relu": "... relu -> attn -> pool (ref000)",
    "block_end": "after the block's last layer, before pooling (ref003)",
    "after_pool": "after the block's max-pool",
    "every_conv": "after every conv unit's ReLU",
})


def block_slots(position: str, n_units: int, bn: bool) -> tuple[Slot, ...]:
    """The slots `position` occupies in a block of `n_units` conv units."""
    last = n_units - 1
    if position == "after_conv":
        return ((last, "conv"),)
    if position == "after_bn":
        if not bn:
            raise AblateError("position 'after_bn' does not exist on a backbone built without BatchNorm (bn=False).")
        return ((last, "bn"),)
    if position in ("after_relu", "block_end"):
        return ((last, "relu"),)  # every block ends with a ReLU
    if position == "after_pool":
        return ((n_units, "pool"),)
    return tuple((i, "relu") for i in range(n_units))  # every_conv


def _attn_name(slot: Slot) -> str:
    return "attn_pool" if slot[1] == "pool" else f"attn{slot[0] + 1}"


class ConvBlocks(Backbone):
    """Blocks of conv units, each block ending in a 2x2 max-pool, then a head."""

    positions = CONV_POSITIONS
    default_position = "after_relu"
    supports_no_bn = True

    def __init__(self, name: str, blocks: tuple[tuple[int, ...], ...], heads: tuple[str, ...], description: str,
                 inplace_relu: bool) -> None:
        self.name, self.blocks, self.heads, self.description = name, blocks, heads, description
        self.inplace_relu = inplace_relu  # ReLU(inplace=True), as the reference tutorial of this backbone builds it

    @property
    def stage_channels(self) -> tuple[int, ...]:
        return tuple(widths[-1] for widths in self.blocks)

    def layout(self) -> str:
        return " / ".join("-".join(map(str, w)) for w in self.blocks) + " (conv widths per block, each + max-pool)"

    def _pooled(self, size: int, input_size: int) -> int:
        check_size(size, self.name, input_size, 2)
        return size // 2

    def sites(self, position: str, *, bn: bool = True, in_channels: int = 3, input_size: int = 32) -> tuple[Site, ...]:
        self.check_position(position)
        out: list[Site] = []
        size = input_size
        for b, widths in enumerate(self.blocks, start=1):
            pooled = self._pooled(size, input_size)
            for slot in block_slots(position, len(widths), bn):
                h = pooled if slot[1] == "pool" else size
                c = widths[min(slot[0], len(widths) - 1)]
                out.append(Site(b, slot, f"features.block{b}.{_attn_name(slot)}", c, h, h))
            size = pooled
        return tuple(out)

    def _block_layers(self, widths: tuple[int, ...], in_channels: int, bn: bool
                      ) -> list[tuple[str, Callable[[], nn.Module], Slot]]:
        """One block's layers as constructors (each built under its own seed), tagged with the slot each ends."""
        layers: list[tuple[str, Callable[[], nn.Module], Slot]] = []
        channels = in_channels
        for u, width in enumerate(widths):
            layers.append((f"conv{u + 1}", partial(nn.Conv2d, channels, width, kernel_size=3, padding=1), (u, "conv")))
            channels = width
            if bn:
                layers.append((f"bn{u + 1}", partial(nn.BatchNorm2d, channels), (u, "bn")))
            layers.append((f"relu{u + 1}", partial(nn.ReLU, inplace=self.inplace_relu), (u, "relu")))
        layers.append(("pool", partial(nn.MaxPool2d, kernel_size=2, stride=2), (len(widths), "pool")))
        return layers

    def build(self, ctx: BuildContext, *, head: str, bn: bool, num_classes: int, in_channels: int,
              input_size: int) -> Built:
        blocks: list[tuple[str, nn.Module]] = []
        stage_paths: list[str] = []
        channels, size = in_channels, input_size
        for b, widths in enumerate(self.blocks, start=1):
            layers: list[tuple[str, nn.Module]] = []
            for name, make, slot in self._block_layers(widths, channels, bn):
                if name == "pool":
                    stage_paths.append(f"features.block{b}.{layers[-1][0]}")  # the block's final activation
                layers.append((name, ctx.layer(f"features.block{b}.{name}", make)))
                module = ctx.module_at(f"features.block{b}.{_attn_name(slot)}", slot)
                if module is not None:
                    layers.append((_attn_name(slot), module))
            blocks.append((f"block{b}", nn.Sequential(OrderedDict(layers))))
            channels, size = widths[-1], self._pooled(size, input_size)
        head_module = ctx.layer("head", lambda: self._head(head, channels, size, num_classes))
        return Built(nn.Sequential(OrderedDict(blocks)), head_module, tuple(stage_paths))

    @staticmethod
    def _head(head: str, channels: int, size: int, num_classes: int) -> nn.Sequential:
        if head == "mlp":
            return nn.Sequential(nn.Flatten(1), nn.Linear(channels * size * size, 512), nn.ReLU(), nn.Dropout(p=0.5),
                                 nn.Linear(512, num_classes))
        if head == "cifar":
            return nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(1), nn.Linear(channels, num_classes))
        return nn.Sequential(  # imagenet
            nn.AdaptiveAvgPool2d((7, 7)), nn.Flatten(1), nn.Linear(channels * 7 * 7, 4096), nn.ReLU(inplace=True),
            nn.Dropout(), nn.Linear(4096, 4096), nn.ReLU(inplace=True), nn.Dropout(), nn.Linear(4096, num_classes),
        )


CNN = ConvBlocks("cnn", ((32,), (64,), (128,)), ("mlp",), "ref000 CNN: 3 x (conv3x3-BN-ReLU-pool), fc 512",
                 inplace_relu=False)
VGG16 = ConvBlocks("vgg16", ((64, 64), (128, 128), (256, 256, 256), (512, 512, 512), (512, 512, 512)),
                   ("cifar", "imagenet"),
                   "VGG16 (cfg D), BN by default; head cifar (512 -> classes) or imagenet (ref003)",
                   inplace_relu=True)
