"""The backbone registry: built-ins by name, plus backbones from outside (`ablate.plugins`).

`register_backbone(obj)` (library use), an import path `pkg.mod:NAME` where a backbone name goes (a
`Backbone` instance or a subclass built with no arguments), or an entry point in group
`ablate.backbones` add to it; the name is the backbone's own `name`.
"""

from __future__ import annotations

from typing import Any

from ..names import BACKBONE_GROUP
from ..plugins import Registry
from .backbones import Backbone, adapt_backbone
from .convnet import CNN, VGG16
from .resnet import RESNET18, RESNET20, RESNET50, RESNET56

GROUP = BACKBONE_GROUP  # the entry-point group a package declares its backbones in
BACKBONES: Registry[Backbone] = Registry(
    "backbone", "backbone", {b.name: b for b in (CNN, VGG16, RESNET20, RESNET56, RESNET18, RESNET50)}, GROUP,
    adapt_backbone)


def list_backbones() -> list[str]:
    """Built-in, registered and installed (entry point) backbone names; entry points are not imported."""
    return list(BACKBONES)


def get_backbone(name: str) -> Backbone:
    return BACKBONES[name]


def resolve_backbone(name: str) -> str:
    """The registry name for `name`, loading an import path or entry point on first use."""
    return BACKBONES.resolve(name)


def register_backbone(obj: Any) -> str:
    """Library use: make a Backbone (instance or no-argument subclass) buildable under its name; returns it."""
    return BACKBONES.register(obj)
