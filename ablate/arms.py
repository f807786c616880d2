"""Arms: the points of the ablation grid, each a concrete model with a stable id.

Factors that do not apply collapse (no reduction for SimAM/ECA/SAM, no position for `none`, knobs
only for the module that has them), positions that put modules in the same places on a backbone
collapse to the first one listed, and reduction ratios that give the same bottleneck widths
(hidden = max(1, C // r), so r=128 and r=1000 both give 1 on 128 channels) collapse to the smallest
ratio, so a grid never trains the same model twice under two names. `collapse_notes` says what went.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .attention import get_attention, hidden_width, resolve_knobs
from .config import check_choice, check_types, config_from_dict
from .models import BACKBONES, block_slots, get_backbone, resolve_stages


@dataclass(frozen=True)
class BackboneChoice:
    """A backbone with its build options (head, BatchNorm)."""

    name: str
    head: str | None = None  # None: the backbone's default head
    bn: bool = True

    def __post_init__(self) -> None:
        check_types(self)
        check_choice("name", self.name, list(BACKBONES))
        if self.head is not None:
            check_choice("head", self.head, get_backbone(self.name).heads)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], where: str = "") -> BackboneChoice:
        """A grid entry: a backbone name, or a mapping with name, head and bn."""
        return config_from_dict(cls, {"name": d} if isinstance(d, str) else d, where)

    @property
    def label(self) -> str:
        """'vgg16', or 'vgg16+imagenet-nobn' when options differ from the defaults."""
        spec = get_backbone(self.name)
        suffix = "" if self.head in (None, spec.default_head) else f"+{self.head}"
        return self.name + suffix + ("" if self.bn else "-nobn")


@dataclass(frozen=True)
class Arm:
    """One model of the grid. `reduction`/`position`/`stages` are None where they do not apply."""

    backbone: BackboneChoice
    attention: str
    position: str | None = None
    reduction: int | None = None
    stages: tuple[int, ...] | None = None
    knobs: tuple[tuple[str, Any], ...] = field(default=())

    @property
    def id(self) -> str:
        parts = [self.backbone.label, self.attention]
        if self.position is not None:
            parts.append(self.position)
        if self.reduction is not None:
            parts.append(f"r{self.reduction}")
        if self.stages is not None:
            parts.append("s" + format_stages(self.stages))
        if self.knobs:
            parts.append(",".join(f"{k}={v}" for k, v in self.knobs))
        return "/".join(parts)

    @property
    def is_baseline(self) -> bool:
        return self.attention == "none"

    def build_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of `ablate.build_model` for this arm (data-dependent ones excluded)."""
        kwargs: dict[str, Any] = {
            "backbone": self.backbone.name,
            "attention": self.attention,
            "head": self.backbone.head,
            "bn": self.backbone.bn,
        }
        if self.position is not None:
            kwargs["position"] = self.position
        if self.reduction is not None:
            kwargs["reduction"] = self.reduction
        if self.stages is not None:
            kwargs["stages"] = list(self.stages)
        kwargs.update(dict(self.knobs))
        return kwargs

    def factors(self) -> dict[str, Any]:
        """Flat factor columns for tables and Optuna params (None where a factor does not apply)."""
        return {
            "arm": self.id,
            "backbone": self.backbone.label,
            "attention": self.attention,
            "position": self.position,
            "reduction": self.reduction,
            "stages": format_stages(self.stages) if self.stages is not None else None,
            "knobs": ",".join(f"{k}={v}" for k, v in self.knobs) or None,
        }


def format_stages(stages: Sequence[int]) -> str:
    """(1,2,3) -> '1-3'; (1,3) -> '1,3'."""
    s = list(stages)
    if len(s) > 1 and s == list(range(s[0], s[-1] + 1)):
        return f"{s[0]}-{s[-1]}"
    return ",".join(map(str, s))


def position_signature(backbone: BackboneChoice, position: str) -> tuple:
    """Where `position` puts modules on `backbone`; equal signatures mean the same model."""
    spec = get_backbone(backbone.name)
    return tuple(block_slots(position, len(widths), backbone.bn) for widths in spec.blocks)


def equivalent_positions(backbone: BackboneChoice, positions: Iterable[str]) -> dict[str, str]:
    """position -> the first listed position that builds the same model on `backbone` (itself when unique)."""
    first: dict[tuple, str] = {}
    return {p: first.setdefault(position_signature(backbone, p), p) for p in dict.fromkeys(positions)}


def hidden_widths(backbone: BackboneChoice, position: str, stages: Sequence[int], reduction: int) -> tuple[int, ...]:
    """The bottleneck width of every module an arm inserts, in model order (what the ratio changes)."""
    blocks = get_backbone(backbone.name).blocks
    out = []
    for b in stages:
        widths = blocks[b - 1]
        for unit, _ in block_slots(position, len(widths), backbone.bn):
            out.append(hidden_width(widths[min(unit, len(widths) - 1)], reduction))  # the pool slot: last width
    return tuple(out)


def equivalent_reductions(backbone: BackboneChoice, position: str, stages: Sequence[int],
                          reductions: Iterable[int]) -> dict[int, int]:
    """ratio -> the smallest listed ratio giving the same hidden widths (the same model); itself when unique.

    The smallest, because it is the ratio the widths were computed from exactly (r=128 on 128 channels is
    hidden 1; r=1000 only reaches 1 through the max(1, .) floor).
    """
    listed = list(dict.fromkeys(reductions))
    first: dict[tuple[int, ...], int] = {}
    for r in sorted(listed):
        first.setdefault(hidden_widths(backbone, position, stages, r), r)
    return {r: first[hidden_widths(backbone, position, stages, r)] for r in listed}


def enumerate_arms(
    backbones: Iterable[BackboneChoice],
    attentions: Iterable[str],
    positions: Iterable[str],
    reductions: Iterable[int],
    stages: Iterable[str | Sequence[int]] = ("all",),
    knobs: Mapping[str, Mapping[str, Sequence[Any]]] | None = None,
) -> list[Arm]:
    """Every distinct arm of the grid, baselines first per backbone, in a stable order."""
    knobs = knobs or {}
    positions, reductions, stages = list(positions), list(reductions), list(stages)
    arms: list[Arm] = []
    for bb in backbones:
        n_blocks = len(get_backbone(bb.name).blocks)
        unique_positions = list(dict.fromkeys(equivalent_positions(bb, positions).values()))
        stage_sets = list(dict.fromkeys(resolve_stages(s, n_blocks) for s in stages))
        for attention in dict.fromkeys(attentions):
            cls = get_attention(attention)
            if attention == "none":
                arms.append(Arm(bb, "none"))
                continue
            ratios = list(dict.fromkeys(reductions)) if cls.uses_reduction else [None]
            swept = knobs.get(attention, {})
            defaults = resolve_knobs(attention, {})
            names = list(swept)
            for values in itertools.product(*(list(dict.fromkeys(swept[n])) for n in names)):
                resolve_knobs(attention, dict(zip(names, values)))  # validates
                chosen = tuple((n, v) for n, v in zip(names, values) if v != defaults[n])
                for position, r, st in itertools.product(unique_positions, ratios, stage_sets):
                    if r is not None and equivalent_reductions(bb, position, st, ratios)[r] != r:
                        continue  # the same model as a smaller ratio already in the grid
                    arms.append(Arm(bb, attention, position, r, st, chosen))
    return list(dict.fromkeys(arms))


def collapse_notes(
    backbones: Iterable[BackboneChoice],
    attentions: Iterable[str],
    positions: Iterable[str],
    reductions: Iterable[int],
    stages: Iterable[str | Sequence[int]] = ("all",),
) -> list[str]:
    """One line per listed position or ratio that enumerate_arms did not keep, naming what it collapsed into."""
    attentions, positions, reductions, stages = list(attentions), list(positions), list(reductions), list(stages)
    if all(a == "none" for a in attentions):
        return []  # `none` has no position and no ratio: nothing collapsed
    uses_reduction = any(get_attention(a).uses_reduction for a in attentions)
    notes: list[str] = []
    for bb in backbones:
        kept_positions = equivalent_positions(bb, positions)
        notes += [f"on {bb.label}, position {p!r} builds the same model as {k!r}; kept once as {k!r}."
                  for p, k in kept_positions.items() if p != k]
        if not uses_reduction:
            continue
        n_blocks = len(get_backbone(bb.name).blocks)
        for position in dict.fromkeys(kept_positions.values()):
            for st in dict.fromkeys(resolve_stages(s, n_blocks) for s in stages):
                for r, k in equivalent_reductions(bb, position, st, reductions).items():
                    if r != k:
                        widths = ",".join(map(str, hidden_widths(bb, position, st, r)))
                        notes.append(f"on {bb.label} at {position}, stages {format_stages(st)}: reduction {r} gives "
                                     f"the same hidden widths ({widths}) as {k}; kept once as r{k}.")
    return notes
