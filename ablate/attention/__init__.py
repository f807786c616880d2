"""The attention zoo: a registry keyed by name, and one factory that validates what it builds.

Modules are listed here explicitly (no import-time registration side effects); `create_attention`
is the only way models build them, so every name, ratio and knob is checked in one place.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from ..config import is_integer
from ..errors import AblateError, unknown
from .base import Attention, Knob, hidden_width
from .cam import ChannelAttentionModule
from .cbam import CBAM
from .coord import CoordAttention
from .eca import ECA
from .gc import GlobalContext
from .local import LocalAttention
from .none import NoAttention
from .nonlocal_ import NonLocal
from .se import SqueezeExcite
from .sam import SpatialAttentionModule
from .simam import SimAM

ATTENTION: Mapping[str, type[Attention]] = MappingProxyType(
    {
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
)


def list_attention() -> list[str]:
    return list(ATTENTION)


def get_attention(name: str) -> type[Attention]:
    if name not in ATTENTION:
        raise unknown("attention type", name, ATTENTION)
    return ATTENTION[name]


def resolve_knobs(name: str, knobs: Mapping[str, Any]) -> dict[str, Any]:
    """Validate `knobs` for attention `name` and fill in defaults. Raises AblateError."""
    cls = get_attention(name)
    declared = {k.name: k for k in cls.knobs}
    for key, value in knobs.items():
        if key not in declared:
            have = ", ".join(declared) if declared else "none"
            raise AblateError(f"attention {name!r} has no knob {key!r}; its knobs: {have}.")
        knob = declared[key]
        if not knob.accepts(value):
            raise AblateError(
                f"attention {name!r} knob {key!r}: bad value {value!r}; allowed: {knob.describe_allowed()}."
            )
    return {k: knobs.get(k, knob.default) for k, knob in declared.items()}


def check_reduction(reduction: Any) -> int:
    if not is_integer(reduction) or reduction < 1:
        raise AblateError(f"reduction ratio must be an integer >= 1, got {reduction!r}.")
    return reduction


def create_attention(name: str, channels: int, reduction: int = 16, **knobs: Any) -> Attention:
    """Build attention `name` for `channels` inputs; `reduction` is ignored by modules without one."""
    cls = get_attention(name)
    resolved = resolve_knobs(name, knobs)
    if cls.uses_reduction:
        return cls(channels, check_reduction(reduction), **resolved)
    return cls(channels, **resolved)


__all__ = [
    "ATTENTION",
    "Attention",
    "Knob",
    "check_reduction",
    "create_attention",
    "get_attention",
    "hidden_width",
    "list_attention",
    "resolve_knobs",
]
