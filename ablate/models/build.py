"""Build any arm of the grid as a model: backbone + attention type + position + ratio + stages.

The model records where every attention module went (`model.insertions`): block, module path,
channels, feature-map size and bottleneck width, so reports can say that spatial attention at a
2x2 map is nearly degenerate, or that non-local at 32x32 builds a 1024x1024 affinity.

Paired initialisation: every layer is constructed on torch's CPU generator seeded from
(init_seed, its module path), so at one seed every arm of a backbone starts from the same weights
in every layer they share, whatever attention modules sit between them (inserting a module shifts
no other layer's draws). Attention modules draw from their own stream, keyed by their path, and
keep their own initialisation (e.g. non-local's zero-initialised output BN).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from functools import partial
from typing import Any

import torch
from torch import nn

from ..attention import Attention, check_reduction, create_attention, get_attention, resolve_knobs
from ..config import is_integer
from ..errors import AblateError
from ..rng import derive_seed, seeded
from .backbones import get_backbone, make_head
from .positions import Slot, block_slots, check_position

Stages = str | Sequence[int]


@dataclass(frozen=True)
class Insertion:
    """One attention module in a built model."""

    block: int  # 1-based
    path: str  # module path in the model, for hooks
    channels: int
    height: int
    width: int
    hidden: int | None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class AttentionNet(nn.Module):
    """features (a Sequential of blocks) -> head. Plain, so hooks and fvcore see every layer."""

    def __init__(self, features: nn.Sequential, head: nn.Sequential, insertions: list[Insertion]) -> None:
        super().__init__()
        self.features = features
        self.head = head
        self.insertions = insertions

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def draw_init_seed() -> int:
    """One draw from torch's global generator: after `torch.manual_seed(s)` every build draws the same
    base seed and leaves the generator in the same state, so dropout that follows stays paired too."""
    return int(torch.randint(0, 2**62, (), dtype=torch.int64))


def resolve_stages(stages: Stages, n_blocks: int) -> tuple[int, ...]:
    """'all' or a list of 1-based block indexes -> sorted unique indexes."""
    if stages == "all":
        return tuple(range(1, n_blocks + 1))
    if isinstance(stages, str) or not isinstance(stages, Sequence) or not stages:
        raise AblateError(f"stages must be 'all' or a non-empty list of block indexes 1..{n_blocks}, got {stages!r}.")
    for s in stages:
        if not is_integer(s) or not 1 <= s <= n_blocks:
            raise AblateError(f"stages: block index {s!r} is out of range; this backbone has blocks 1..{n_blocks}.")
    return tuple(sorted(set(stages)))


def _pooled(size: int, backbone: str, input_size: int) -> int:
    if size < 2:
        raise AblateError(
            f"input_size {input_size} is too small for backbone {backbone!r}: a feature map reaches "
            f"{size}x{size} before a 2x2 max-pool (vgg16 needs >= 32, cnn >= 8)."
        )
    return size // 2


def _block_layers(
    widths: Sequence[int], in_channels: int, size: int, pooled: int, bn: bool, inplace: bool
) -> list[tuple[str, Callable[[], nn.Module], Slot, int, int]]:
    """One block's layers (as constructors, so each can be built under its own seed), each tagged
    with the slot it ends and the (channels, map size) after it."""
    layers: list[tuple[str, Callable[[], nn.Module], Slot, int, int]] = []
    channels = in_channels
    for u, width in enumerate(widths):
        conv = partial(nn.Conv2d, channels, width, kernel_size=3, padding=1)
        layers.append((f"conv{u + 1}", conv, (u, "conv"), width, size))
        channels = width
        if bn:
            layers.append((f"bn{u + 1}", partial(nn.BatchNorm2d, channels), (u, "bn"), channels, size))
        layers.append((f"relu{u + 1}", partial(nn.ReLU, inplace=inplace), (u, "relu"), channels, size))
    layers.append(("pool", partial(nn.MaxPool2d, kernel_size=2, stride=2), (len(widths), "pool"), channels, pooled))
    return layers


def build_model(
    backbone: str,
    attention: str = "none",
    position: str = "after_relu",
    reduction: int = 16,
    stages: Stages = "all",
    num_classes: int = 10,
    in_channels: int = 3,
    input_size: int = 32,
    *,
    head: str | None = None,
    bn: bool = True,
    init_seed: int | None = None,
    **knobs: Any,
) -> AttentionNet:
    """Build one arm. `knobs` are the attention module's own factors (see `list_attention`).

    Initial weights are a function of `init_seed` and each layer's path (see the module docstring);
    `init_seed=None` draws it from torch's global generator (exactly one draw, whatever the arm).
    """
    spec = get_backbone(backbone)
    get_attention(attention)
    check_position(position)
    resolve_knobs(attention, knobs)
    check_reduction(reduction)
    for name, value in (("num_classes", num_classes), ("in_channels", in_channels), ("input_size", input_size)):
        if not is_integer(value) or value < 1:
            raise AblateError(f"{name} must be a positive integer, got {value!r}.")
    chosen = resolve_stages(stages, len(spec.blocks))
    base = draw_init_seed() if init_seed is None else init_seed

    blocks: list[tuple[str, nn.Module]] = []
    insertions: list[Insertion] = []
    channels, size = in_channels, input_size
    for b, widths in enumerate(spec.blocks, start=1):
        slots = block_slots(position, len(widths), bn) if attention != "none" and b in chosen else ()
        pooled = _pooled(size, backbone, input_size)
        layers: list[tuple[str, nn.Module]] = []
        for name, make, slot, c, h in _block_layers(widths, channels, size, pooled, bn, spec.inplace_relu):
            with seeded(derive_seed(base, "backbone", f"features.block{b}.{name}")):
                layers.append((name, make()))
            if slot in slots:
                attn_name = "attn_pool" if slot[1] == "pool" else f"attn{slot[0] + 1}"
                path = f"features.block{b}.{attn_name}"
                with seeded(derive_seed(base, "attention", path)):
                    module = create_attention(attention, c, reduction, **knobs)
                layers.append((attn_name, module))
                insertions.append(Insertion(b, path, c, h, h, module.hidden))
        blocks.append((f"block{b}", nn.Sequential(OrderedDict(layers))))
        channels, size = widths[-1], pooled

    features = nn.Sequential(OrderedDict(blocks))
    with seeded(derive_seed(base, "backbone", "head")):  # the head is the same in every arm of a backbone
        head_module = make_head(spec, head or spec.default_head, channels, (size, size), num_classes)
    return AttentionNet(features, head_module, insertions)


def attention_modules(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """(path, module) of every attention module in `model`, in forward order."""
    return [(n, m) for n, m in model.named_modules() if isinstance(m, Attention)]
