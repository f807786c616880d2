"""Build any arm of the grid as a model: backbone + attention type + position + ratio + stages.

The backbone says where a position puts modules (`Backbone.sites`) and builds itself around them;
this module checks the arm's factors, builds the attention module for every chosen site and records
it (`model.insertions`: stage, module path, channels, feature-map size and bottleneck width), so
reports can say that spatial attention at a 2x2 map is nearly degenerate, or that non-local at
32x32 builds a 1024x1024 affinity.

Paired initialisation: every layer is constructed on torch's CPU generator seeded from
(init_seed, its module path), so at one seed every arm of a backbone starts from the same weights
in every layer they share, whatever attention modules sit between them (inserting a module shifts
no other layer's draws). Attention modules draw from their own stream, keyed by their path, and
keep their own initialisation (e.g. non-local's zero-initialised output BN).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

from ..attention import Attention, check_reduction, create_attention, get_attention, resolve_knobs
from ..config import is_integer
from ..errors import AblateError
from ..rng import derive_seed, seeded
from .backbones import BuildContext, Site
from .registry import get_backbone

Stages = str | Sequence[int]


@dataclass(frozen=True)
class Insertion:
    """One attention module in a built model."""

    block: int  # the 1-based stage (a block of the conv backbones)
    path: str  # module path in the model, for hooks
    channels: int
    height: int
    width: int
    hidden: int | None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class AttentionNet(nn.Module):
    """features -> head. Plain, so hooks and fvcore see every layer. `stage_paths` names the module
    whose output is each stage's final activation (feature maps and Grad-CAM in the diagnostics)."""

    def __init__(self, features: nn.Module, head: nn.Module, insertions: list[Insertion],
                 stage_paths: tuple[str, ...] = ()) -> None:
        super().__init__()
        self.features = features
        self.head = head
        self.insertions = insertions
        self.stage_paths = stage_paths

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def draw_init_seed() -> int:
    """One draw from torch's global generator: after `torch.manual_seed(s)` every build draws the same
    base seed and leaves the generator in the same state, so dropout that follows stays paired too."""
    return int(torch.randint(0, 2**62, (), dtype=torch.int64))


def resolve_stages(stages: Stages, n_blocks: int) -> tuple[int, ...]:
    """'all' or a list of 1-based stage (block) indexes -> sorted unique indexes."""
    if stages == "all":
        return tuple(range(1, n_blocks + 1))
    if isinstance(stages, str) or not isinstance(stages, Sequence) or not stages:
        raise AblateError(f"stages must be 'all' or a non-empty list of block indexes 1..{n_blocks}, got {stages!r}.")
    for s in stages:
        if not is_integer(s) or not 1 <= s <= n_blocks:
            raise AblateError(f"stages: block index {s!r} is out of range; this backbone has blocks 1..{n_blocks}.")
    return tuple(sorted(set(stages)))


def build_model(
    backbone: str,
    attention: str = "none",
    position: str | None = None,
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
    """Build one arm. `knobs` are the attention module's own factors (see `list_attention`); `position`
    None is the backbone's default (after_relu on the conv backbones, standard on the ResNets).

    Initial weights are a function of `init_seed` and each layer's path (see the module docstring);
    `init_seed=None` draws it from torch's global generator (exactly one draw, whatever the arm).
    """
    spec = get_backbone(backbone)
    get_attention(attention)
    position = spec.check_position(position or spec.default_position)
    resolve_knobs(attention, knobs)
    check_reduction(reduction)
    for name, value in (("num_classes", num_classes), ("in_channels", in_channels), ("input_size", input_size)):
        if not is_integer(value) or value < 1:
            raise AblateError(f"{name} must be a positive integer, got {value!r}.")
    chosen = resolve_stages(stages, spec.n_stages)
    head = spec.check_options(head, bn)
    base = draw_init_seed() if init_seed is None else init_seed
    sites = spec.sites(position, bn=bn, in_channels=in_channels, input_size=input_size)
    used = [s for s in sites if s.stage in chosen] if attention != "none" else []
    hidden: dict[str, int | None] = {}

    def attend(site: Site) -> nn.Module:
        with seeded(derive_seed(base, "attention", site.path)):
            try:
                module = create_attention(attention, site.channels, reduction, **knobs)
            except AblateError as err:  # a plugin that cannot be built: say where it was going
                raise AblateError(f"site {site.path} of {backbone}: {err}") from None
        hidden[site.path] = getattr(module, "hidden", None)
        return module

    built = spec.build(BuildContext(base, {s.path: s for s in used}, attend), head=head, bn=bn,
                       num_classes=num_classes, in_channels=in_channels, input_size=input_size)
    missing = [s.path for s in used if s.path not in hidden]
    if missing:
        raise AblateError(f"backbone {backbone!r} did not place a module at {', '.join(missing)}: its build and its "
                          "sites disagree.")
    insertions = [Insertion(s.stage, s.path, s.channels, s.height, s.width, hidden[s.path]) for s in used]
    return AttentionNet(built.features, built.head, insertions, built.stage_paths)


def attention_modules(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """(path, module) of every attention module in `model`, in forward order (plugins included when the
    model records its insertions)."""
    insertions = getattr(model, "insertions", None)
    if insertions is not None:
        return [(i.path, model.get_submodule(i.path)) for i in insertions]
    return [(n, m) for n, m in model.named_modules() if isinstance(m, Attention)]
