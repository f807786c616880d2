"""The position vocabulary: every word a study file may use for where a module goes.

Each backbone declares which of these it has (`Backbone.positions`) and where they put modules
(`Backbone.sites`); this module only gathers the words, for validation messages and `ablate list`.
A plugin backbone may declare positions of its own; they are valid on it alone.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from ..errors import unknown
from .convnet import CONV_POSITIONS, block_slots
from .resnet import RESIDUAL_POSITIONS

POSITIONS: Mapping[str, str] = MappingProxyType({**CONV_POSITIONS, **RESIDUAL_POSITIONS})


def list_positions() -> list[str]:
    return list(POSITIONS)


def check_position(position: str) -> str:
    """A word some built-in backbone knows (whether the backbone at hand has it: `Backbone.check_position`)."""
    if position not in POSITIONS:
        raise unknown("position", position, POSITIONS)
    return position


__all__ = ["POSITIONS", "block_slots", "check_position", "list_positions"]
