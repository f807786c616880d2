"""The built-in names of ablate's registries, as plain data: what a refusal checks before torch is imported.

Importing torch costs seconds and hundreds of MB; a study file that names an unknown attention type
or a bad knob value should be refused without that. The registries themselves (`ablate.attention`,
`ablate.models`) hold classes built on torch, so their built-in names and choice knobs are listed
here too; tests/test_names.py asserts that this table equals the real registries. Plugin names
(import paths, entry points) are checked after import, by the registries.
"""

from __future__ import annotations

import importlib.metadata
import sys
from collections.abc import Mapping
from types import MappingProxyType

ATTENTION_GROUP = "ablate.attention"  # the entry-point group a package declares its attention modules in
BACKBONE_GROUP = "ablate.backbones"  # the entry-point group a package declares its backbones in

# attention type -> knob -> its finite choices (None: a predicate decides, checked once the class is loaded)
BUILTIN_ATTENTION: Mapping[str, Mapping[str, tuple[object, ...] | None]] = MappingProxyType({
    "none": {},
    "se": {"squeeze": ("avg", "max"), "gate": ("sigmoid", "tanh", "relu")},
    "cam": {"pool": ("avg+max", "avg", "max")},
    "sam": {"kernel": (7, 3)},
    "cbam": {"order": ("channel_first", "spatial_first", "parallel"), "kernel": (7, 3),
             "pool": ("avg+max", "avg", "max")},
    "local": {},
    "eca": {"k": None},
    "coord": {},
    "gc": {},
    "nonlocal": {},
    "simam": {"lambda": None},
})
BUILTIN_BACKBONES: tuple[str, ...] = ("cnn", "vgg16", "resnet20", "resnet56", "resnet18", "resnet50")
POSITIONS: tuple[str, ...] = ("after_conv", "after_bn", "after_relu", "block_end", "after_pool", "every_conv",
                              "standard", "pre", "post", "identity")  # every backbone's, together
PRECISIONS: tuple[str, ...] = ("fp32", "bf16", "fp16")
DATASETS: tuple[str, ...] = ("cifar10", "cifar100", "svhn", "mnist", "fashion-mnist", "synthetic")
IMAGEFOLDER = "imagefolder:"  # a dataset named imagefolder:<path> is a folder of images
DATA_ENV = "ABLATE_DATA"  # the dataset root when --data-dir is not given
AUGMENTATIONS: tuple[str, ...] = ("crop", "flip", "jitter", "rotate")  # DataConfig.augment: applied in this order
REF000_AUGMENT = AUGMENTATIONS  # the reference tutorials' augmentation


def entry_point_names(group: str) -> list[str]:
    """The names installed packages declare in `group` (nothing is imported)."""
    return [ep.name for ep in importlib.metadata.entry_points(group=group)]


def knob_accepts(choices: tuple[object, ...], value: object) -> bool:
    """A choice knob's rule (ablate.attention.base.Knob.accepts): equal and of the same type (3.0 != 3, True != 1)."""
    return any(value == c and type(value) is type(c) for c in choices)


def knob_value_error(attention: str, knob: str, value: object, allowed: str) -> str:
    """The one wording of a knob value an attention type does not take."""
    return f"attention {attention!r} knob {knob!r}: bad value {value!r}; allowed: {allowed}."


def no_knob_error(attention: str, knob: str, declared: list[str]) -> str:
    """The one wording of a knob an attention type does not declare."""
    return f"attention {attention!r} has no knob {knob!r}; its knobs: {', '.join(declared) if declared else 'none'}."


def builtin_knob_error(attention: str, knob: str, value: object) -> str | None:
    """What is wrong with `knob: value` of a built-in attention type, as far as the table knows; None: nothing."""
    declared = BUILTIN_ATTENTION[attention]
    if knob not in declared:
        return no_knob_error(attention, knob, list(declared))
    choices = declared[knob]
    if choices is not None and not knob_accepts(choices, value):
        return knob_value_error(attention, knob, value, " | ".join(map(str, choices)))
    return None


def _names(module: str, registry: str, builtins: list[str], group: str) -> list[str]:
    """A registry's names: the live registry when its module is already imported (it also holds what was
    registered in code), else the built-in names and the installed entry points, without importing torch."""
    live = sys.modules.get(module)
    if live is not None:
        return list(getattr(live, registry))
    return [*builtins, *(n for n in entry_point_names(group) if n not in builtins)]


def attention_names() -> list[str]:
    return _names("ablate.attention", "ATTENTION", list(BUILTIN_ATTENTION), ATTENTION_GROUP)


def backbone_names() -> list[str]:
    return _names("ablate.models.registry", "BACKBONES", list(BUILTIN_BACKBONES), BACKBONE_GROUP)
