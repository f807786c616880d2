"""What every attention module declares, so the grid knows which factors apply to it.

A module takes the channel count first and keeps the input shape. Class attributes say whether the
reduction ratio applies and which knobs (module-specific factors) exist, with their defaults and
allowed values; the study grid collapses factors a module does not have, so arms never repeat.

A module also declares its gates, so diagnostics can draw them without knowing its internals:
`gate_modules()` names the submodules whose outputs are the gates (the caller hooks them; the
forward pass is untouched, so training, torch.compile and MAC counting never see this), and
`gate_maps()` turns those captured outputs into the documented maps.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from torch import Tensor, nn

from ..config import is_integer, is_number
from ..names import knob_accepts


def hidden_width(channels: int, reduction: int) -> int:
    """Bottleneck width exactly as the reference tutorials compute it: max(1, C // r) (no rounding to 8)."""
    return max(1, channels // reduction)


@dataclass(frozen=True)
class Knob:
    """A module's own factor: a default and either a finite set of choices or a predicate."""

    name: str
    default: Any
    choices: tuple[Any, ...] | None = None
    check: Callable[[Any], bool] | None = None
    allowed: str = ""  # words for the allowed values when `check` is used
    help: str = ""

    def accepts(self, value: Any) -> bool:
        if self.choices is not None:
            return knob_accepts(self.choices, value)
        return self.check(value) if self.check is not None else True

    def describe_allowed(self) -> str:
        if self.choices is not None:
            return " | ".join(map(str, self.choices))
        return self.allowed


class Attention(nn.Module):
    """Base class: registry metadata, the recorded bottleneck width and the declared gates."""

    name: ClassVar[str] = ""
    kind: ClassVar[str] = ""  # channel | spatial | channel+spatial | global context | none
    uses_reduction: ClassVar[bool] = False
    knobs: ClassVar[tuple[Knob, ...]] = ()

    def __init__(self) -> None:
        super().__init__()
        self.hidden: int | None = None  # bottleneck width actually built (None: no bottleneck)

    def extra_repr(self) -> str:
        return f"hidden={self.hidden}" if self.hidden is not None else ""

    def gate_modules(self) -> dict[str, nn.Module]:
        """Submodules whose forward outputs are this module's gates, by name; none by default.

        Named "channel" (output B x C, any trailing 1s) and "spatial" (B x 1 x H x W) unless the
        module overrides `gate_maps` to combine other outputs.
        """
        return {}

    def gate_maps(self, outputs: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """The gate maps from one forward's captured `gate_modules()` outputs.

        "channel": B x C, the weight of each channel; "spatial": B x H x W, the weight of each position.
        """
        maps: dict[str, Tensor] = {}
        if "channel" in outputs:
            maps["channel"] = outputs["channel"].reshape(outputs["channel"].shape[0], -1)
        if "spatial" in outputs:
            maps["spatial"] = outputs["spatial"][:, 0]
        return maps


def is_positive_number(value: Any) -> bool:
    return is_number(value) and value > 0


def is_odd_positive_int(value: Any) -> bool:
    return is_integer(value) and value >= 1 and value % 2 == 1
