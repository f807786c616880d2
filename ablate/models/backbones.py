"""What a backbone is to ablate: stages, insertion sites, and how to build itself around modules.

A backbone owns its structure. `sites(position, ...)` is the one source of geometry: for every
place a position puts an attention module it gives the stage, a slot (what makes two positions the
same model), the module path in the built model, the channel count and the feature-map size.
Model building, arm enumeration and collapse, the MAC and feature-map columns and the diagnostics
all read it; `build` places a module at exactly the sites it is handed.

Built-ins: `cnn` and `vgg16` (plain conv blocks, `ablate.models.convnet`), `resnet20`, `resnet56`,
`resnet18`, `resnet50` (`ablate.models.resnet`). Backbones from outside come in through the same
registry as attention modules (`ablate.plugins`): `register_backbone`, an import path, or an entry
point in group `ablate.backbones`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass
from typing import Any

from torch import nn

from ..errors import AblateError, did_you_mean, unknown
from ..rng import derive_seed, seeded


@dataclass(frozen=True)
class Site:
    """One place an attention module goes in a built model."""

    stage: int  # 1-based
    slot: Hashable  # where within the stage; two positions with the same (stage, slot)s build the same model
    path: str  # the module's path in the model (hooks, per-module MACs)
    channels: int
    height: int
    width: int


@dataclass
class BuildContext:
    """What `Backbone.build` needs from the caller: seeded layers and the modules for the sites.

    Every backbone layer is constructed on torch's CPU generator seeded from (seed, its path), so at one
    seed every arm of a backbone starts from the same weights in every layer they share.
    """

    seed: int
    sites: Mapping[str, Site]  # path -> site, only the sites that get a module
    attend: Callable[[Site], nn.Module]

    def layer(self, path: str, make: Callable[[], nn.Module]) -> nn.Module:
        with seeded(derive_seed(self.seed, "backbone", path)):
            return make()

    def module_at(self, path: str, slot: Hashable | None = None) -> nn.Module | None:
        """The attention module for the site at `path` (and `slot`, where one path serves several slots),
        or None when the arm puts none there."""
        site = self.sites.get(path)
        return self.attend(site) if site is not None and (slot is None or site.slot == slot) else None


@dataclass(frozen=True)
class Built:
    """What `Backbone.build` returns: features -> head, and each stage's output module (diagnostics)."""

    features: nn.Module
    head: nn.Module
    stage_paths: tuple[str, ...]  # the module whose output is each stage's final activation


class Backbone(ABC):
    """A backbone's declared structure. Subclasses set the class attributes and the three methods."""

    name: str = ""
    description: str = ""
    heads: tuple[str, ...] = ()  # allowed heads; the first is the default
    positions: Mapping[str, str] = {}  # position -> where it puts modules (words)
    default_position: str = ""  # what build_model uses when no position is given
    supports_no_bn: bool = False

    @property
    def default_head(self) -> str:
        return self.heads[0]

    @property
    @abstractmethod
    def stage_channels(self) -> tuple[int, ...]:
        """Output channels of each stage; the number of stages is its length."""

    @property
    def n_stages(self) -> int:
        return len(self.stage_channels)

    @abstractmethod
    def layout(self) -> str:
        """The structure in a few words, for `ablate list` (e.g. '16x3 | 32x3 | 64x3 basic blocks')."""

    @abstractmethod
    def sites(self, position: str, *, bn: bool = True, in_channels: int = 3, input_size: int = 32) -> tuple[Site, ...]:
        """Every site `position` occupies, in forward order, over all stages."""

    @abstractmethod
    def build(self, ctx: BuildContext, *, head: str, bn: bool, num_classes: int, in_channels: int,
              input_size: int) -> Built:
        """The model, with `ctx.module_at(path)` placed at every path of its `sites`."""

    def check_position(self, position: str) -> str:
        if position not in self.positions:
            raise AblateError(f"unknown position {position!r} for backbone {self.name!r}"
                              f"{did_you_mean(position, self.positions)}; allowed: {', '.join(self.positions)}.")
        return position

    def check_options(self, head: str | None, bn: bool) -> str:
        """The head to build; a head or a BN setting the backbone does not have is a user error."""
        head = head or self.default_head
        if head not in self.heads:
            raise unknown(f"head for backbone {self.name!r}", head, self.heads)
        if not bn and not self.supports_no_bn:
            raise AblateError(f"backbone {self.name!r} is always built with BatchNorm; bn: false is not available.")
        return head


def check_size(size: int, backbone: str, input_size: int, minimum: int) -> None:
    """A feature map that would shrink below `minimum` before a downsampling step is a user error."""
    if size < minimum:
        raise AblateError(f"input_size {input_size} is too small for backbone {backbone!r}: a feature map reaches "
                          f"{size}x{size} before a stride-2 step (vgg16 needs >= 32, cnn >= 8, ImageNet ResNets "
                          ">= 32, CIFAR ResNets >= 4).")


def adapt_backbone(obj: Any, target: str) -> tuple[str, Backbone]:
    """Check a loaded backbone (a Backbone instance, or a subclass built with no arguments); its name."""
    if isinstance(obj, type) and issubclass(obj, Backbone):
        try:
            obj = obj()
        except Exception as err:  # noqa: BLE001  (the user's code)
            raise AblateError(f"backbone {target!r} cannot be built with no arguments: {type(err).__name__}: "
                              f"{err}.") from None
    if not isinstance(obj, Backbone):
        raise AblateError(f"backbone {target!r} is {obj!r}, not an ablate.models.Backbone (or a subclass of it).")
    if not obj.name or not obj.heads or obj.default_position not in obj.positions:
        raise AblateError(f"backbone {target!r} must declare a name, at least one head, its positions and a "
                          "default_position among them.")
    return obj.name, obj

