"""The attention zoo: a registry keyed by name, and one factory that validates what it builds.

Built-in modules are listed here explicitly (no import-time registration side effects). Modules from
outside come in through the same registry (`ablate.plugins`): `register_attention(cls)`, an import
path `pkg.mod:Class` where a name goes, or an entry point in group `ablate.attention`. A plugin is any
`nn.Module` class whose constructor takes the channel count first (then `reduction` if it declares
`uses_reduction = True`, then its declared `knobs` by keyword) and that keeps the input shape;
subclassing `Attention` adds the gate declarations diagnostics use. `create_attention` is the only
way models build modules, so every name, ratio and knob is checked in one place.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import nn

from ..config import is_integer
from ..errors import AblateError
from ..names import ATTENTION_GROUP, knob_value_error, no_knob_error
from ..plugins import Registry
from .base import Attention, Knob, hidden_width
from .cam import ChannelAttentionModule
from .cbam import CBAM
from .coord import CoordAttention
from .eca import ECA
from .gc import GlobalContext
from .local import LocalAttention
from .none import NoAttention
from .nonlocal_ import NonLocal
from .sam import SpatialAttentionModule
from .se import SqueezeExcite
from .simam import SimAM

BUILTIN: dict[str, type[nn.Module]] = {
        cls.name: cls
        for cls in (
            NoAttention,
            SqueezeExcite,
            ChannelAttentionModule,
            SpatialAttentionModule,
            CBAM,
            LocalAttention,
            ECA,
            CoordAttention,
            GlobalContext,
            NonLocal,
            SimAM,
        )
}
GROUP = ATTENTION_GROUP  # the entry-point group a package declares its modules in


def _adapt(obj: Any, target: str) -> tuple[str, type[nn.Module]]:
    """Check a loaded attention class: an nn.Module subclass with well-formed metadata; its name."""
    if not (isinstance(obj, type) and issubclass(obj, nn.Module)):
        raise AblateError(f"attention module {target!r} is {obj!r}, not an nn.Module class; an attention module is a "
                          "class whose constructor takes the channel count and that keeps the input shape.")
    knobs = getattr(obj, "knobs", ())
    if not isinstance(knobs, tuple) or not all(isinstance(k, Knob) for k in knobs):
        raise AblateError(f"attention module {target!r}: `knobs` must be a tuple of ablate.attention.Knob.")
    if not isinstance(getattr(obj, "uses_reduction", False), bool):
        raise AblateError(f"attention module {target!r}: `uses_reduction` must be True or False.")
    name = getattr(obj, "name", "") or obj.__name__.lower()
    if not isinstance(name, str) or not name.replace("_", "").replace("-", "").isalnum():
        raise AblateError(f"attention module {target!r}: name {name!r} must be letters, digits, '_' or '-'.")
    return name, obj


ATTENTION: Registry[type[nn.Module]] = Registry("attention", "attention type", BUILTIN, GROUP, _adapt)


def register_attention(cls: type[nn.Module]) -> str:
    """Library use: make `cls` buildable under its name (class attribute `name`, else the class name
    lowercased) and return that name. Checked like an import path; registering it twice is harmless."""
    return ATTENTION.register(cls)


def resolve_attention(name: str) -> str:
    """The registry name for `name`, loading an import path or entry point on first use."""
    return ATTENTION.resolve(name)


def list_attention() -> list[str]:
    return list(ATTENTION)


def get_attention(name: str) -> type[nn.Module]:
    return ATTENTION[name]


def uses_reduction(name: str) -> bool:
    return bool(getattr(get_attention(name), "uses_reduction", False))


def declared_knobs(name: str) -> tuple[Knob, ...]:
    return tuple(getattr(get_attention(name), "knobs", ()))


def resolve_knobs(name: str, knobs: Mapping[str, Any]) -> dict[str, Any]:
    """Validate `knobs` for attention `name` and fill in defaults. Raises AblateError."""
    declared = {k.name: k for k in declared_knobs(name)}
    for key, value in knobs.items():
        if key not in declared:
            raise AblateError(no_knob_error(name, key, list(declared)))
        knob = declared[key]
        if not knob.accepts(value):
            raise AblateError(knob_value_error(name, key, value, knob.describe_allowed()))
    return {k: knobs.get(k, knob.default) for k, knob in declared.items()}


def check_reduction(reduction: Any) -> int:
    if not is_integer(reduction) or reduction < 1:
        raise AblateError(f"reduction ratio must be an integer >= 1, got {reduction!r}.")
    return reduction


def create_attention(name: str, channels: int, reduction: int = 16, **knobs: Any) -> nn.Module:
    """Build attention `name` for `channels` inputs; `reduction` is ignored by modules without one.

    A plugin whose constructor refuses these arguments (e.g. a declared knob it does not take) is a
    user error naming the module and the arguments; a built-in that fails is a bug and raises as is.
    """
    cls = get_attention(name)
    resolved = resolve_knobs(name, knobs)
    args = (channels, check_reduction(reduction)) if uses_reduction(name) else (channels,)
    if ATTENTION.is_builtin(name):
        return cls(*args, **resolved)
    try:
        module = cls(*args, **resolved)
    except Exception as err:  # noqa: BLE001  (the user's code: any failure is reported, with its site)
        target = ATTENTION.sources()[name].target
        raise AblateError(f"attention {name!r} ({target}) cannot be built with channels={channels}"
                          + (f", reduction={reduction}" if uses_reduction(name) else "")
                          + f", knobs {resolved}: {type(err).__name__}: {err}. Its constructor must take the channel "
                          "count first, then `reduction` if uses_reduction is True, then every declared knob."
                          ) from None
    if not isinstance(module, nn.Module):
        raise AblateError(f"attention {name!r} built {type(module).__name__}, not an nn.Module.")
    return module


__all__ = [
    "ATTENTION",
    "Attention",
    "Knob",
    "check_reduction",
    "create_attention",
    "declared_knobs",
    "get_attention",
    "hidden_width",
    "list_attention",
    "register_attention",
    "resolve_attention",
    "resolve_knobs",
    "uses_reduction",
]
