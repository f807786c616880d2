"""Where an attention module goes inside a block.

A block is n conv units (conv -> [bn] -> relu) followed by a 2x2 max-pool. A position resolves to a
set of *slots* (unit index, the op the module follows). The unit-level positions (after_conv,
after_bn, after_relu) act on the block's last unit, so they put one module per stage like
block_end and after_pool: a position ablation then compares placements at equal module count.
every_conv puts one after every unit's ReLU (VGG's 2-3 per block). Two positions that resolve to
the same slots on a backbone build the same model, and the grid keeps only one of them.
"""

from __future__ import annotations

from ..errors import AblateError, unknown

Slot = tuple[int, str]  # (unit index within the block, "conv" | "bn" | "relu" | "pool")

POSITIONS: dict[str, str] = {
    "after_conv": "conv -> attn -> bn -> relu (last conv unit of each block)",
    "after_bn": "conv -> bn -> attn -> relu (last conv unit of each block; needs BatchNorm)",
    "after_relu": "... relu -> attn -> pool (ref000)",
    "block_end": "after the block's last layer, before pooling (ref003)",
    "after_pool": "after the block's max-pool",
    "every_conv": "after every conv unit's ReLU",
}


def list_positions() -> list[str]:
    return list(POSITIONS)


def check_position(position: str) -> str:
    if position not in POSITIONS:
        raise unknown("position", position, POSITIONS)
    return position


def block_slots(position: str, n_units: int, bn: bool) -> tuple[Slot, ...]:
    """The slots `position` occupies in a block of `n_units` conv units."""
    check_position(position)
    last = n_units - 1
    if position == "after_conv":
        return ((last, "conv"),)
    if position == "after_bn":
        if not bn:
            raise AblateError("position 'after_bn' does not exist on a backbone built without BatchNorm (bn=False).")
        return ((last, "bn"),)
    if position in ("after_relu", "block_end"):
        return ((last, "relu"),)  # every built-in block ends with a ReLU
    if position == "after_pool":
        return ((n_units, "pool"),)
    return tuple((i, "relu") for i in range(n_units))  # every_conv
