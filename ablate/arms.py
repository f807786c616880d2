"""Arms: the points of the ablation grid, each a concrete model with a stable id.

Factors that do not apply collapse (no reduction for SimAM/ECA/SAM, no position for `none`, knobs
only for the module that has them, a position only on the backbones that have it), positions that put
modules in the same places on a backbone (same `Backbone.sites`) collapse to the first one listed, and
reduction ratios of a built-in module that give the same bottleneck widths
(hidden = max(1, C // r), so r=128 and r=1000 both give 1 on 128 channels) collapse to the smallest
ratio, so a grid never trains the same model twice under two names. `collapse_notes` says what went.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .attention import (
    ATTENTION,
    check_reduction,
    get_attention,
    hidden_width,
    resolve_attention,
    resolve_knobs,
    uses_reduction,
)
from .config import check_choice, check_types, config_from_dict
from .errors import AblateError
from .models import BACKBONES, get_backbone, resolve_backbone, resolve_stages
from .plugins import is_import_path


@dataclass(frozen=True)
class BackboneChoice:
    """A backbone with its build options (head, BatchNorm)."""

    name: str
    head: str | None = None  # None: the backbone's default head
    bn: bool = True

    def __post_init__(self) -> None:
        check_types(self)
        if self.name not in BACKBONES:  # built-in, registered or an installed entry point
            check_choice("name", self.name, list(BACKBONES))
        if self.head is not None:
            check_choice("head", self.head, get_backbone(self.name).heads)
        get_backbone(self.name).check_options(self.head, self.bn)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], where: str = "") -> BackboneChoice:
        """A grid entry: a backbone name (or import path), or a mapping with name, head and bn."""
        d = {"name": d} if isinstance(d, str) else d
        if isinstance(d, Mapping) and is_import_path(d.get("name")):
            try:  # an import path or an entry point loads here
                d = {**d, "name": resolve_backbone(d["name"])}
            except AblateError as err:
                raise AblateError(f"{where}: {err}" if where else str(err)) from None
        return config_from_dict(cls, d, where)

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
    return tuple((s.stage, s.slot) for s in get_backbone(backbone.name).sites(position, bn=backbone.bn))


def has_position(backbone: BackboneChoice, position: str) -> bool:
    return position in get_backbone(backbone.name).positions


def equivalent_positions(backbone: BackboneChoice, positions: Iterable[str]) -> dict[str, str]:
    """position -> the first listed position that builds the same model on `backbone` (itself when unique)."""
    first: dict[tuple, str] = {}
    return {p: first.setdefault(position_signature(backbone, p), p) for p in dict.fromkeys(positions)
            if has_position(backbone, p)}


def hidden_widths(backbone: BackboneChoice, position: str, stages: Sequence[int], reduction: int) -> tuple[int, ...]:
    """The bottleneck width of every module an arm inserts, in model order (what the ratio changes)."""
    sites = get_backbone(backbone.name).sites(position, bn=backbone.bn)
    return tuple(hidden_width(s.channels, reduction) for s in sites if s.stage in stages)


def equivalent_reductions(backbone: BackboneChoice, position: str, stages: Sequence[int],
                          reductions: Iterable[int]) -> dict[int, int]:
    """ratio -> the smallest listed ratio giving the same hidden widths (the same model); itself when unique.

    Only for built-in modules, whose hidden width is max(1, C // r); a plugin's ratios are all kept.
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
    backbones, positions, reductions, stages = list(backbones), list(positions), list(reductions), list(stages)
    check_positions_exist(backbones, positions)
    arms: list[Arm] = []
    for bb in backbones:
        n_blocks = get_backbone(bb.name).n_stages
        unique_positions = list(dict.fromkeys(equivalent_positions(bb, positions).values()))
        stage_sets = list(dict.fromkeys(resolve_stages(s, n_blocks) for s in stages))
        for attention in dict.fromkeys(attentions):
            get_attention(attention)
            if attention == "none":
                arms.append(Arm(bb, "none"))
                continue
            ratios = list(dict.fromkeys(reductions)) if uses_reduction(attention) else [None]
            collapse = ATTENTION.is_builtin(attention)
            swept = knobs.get(attention, {})
            defaults = resolve_knobs(attention, {})
            names = list(swept)
            for values in itertools.product(*(list(dict.fromkeys(swept[n])) for n in names)):
                resolve_knobs(attention, dict(zip(names, values)))  # validates
                chosen = tuple((n, v) for n, v in zip(names, values) if v != defaults[n])
                for position, r, st in itertools.product(unique_positions, ratios, stage_sets):
                    if r is not None and collapse and equivalent_reductions(bb, position, st, ratios)[r] != r:
                        continue  # the same model as a smaller ratio already in the grid
                    arms.append(Arm(bb, attention, position, r, st, chosen))
    return list(dict.fromkeys(arms))


def arms_from_names(
    backbones: Sequence[str],
    attentions: Sequence[str],
    positions: Sequence[str] | None = None,
    reductions: Sequence[int] = (16,),
    stages: str | Sequence[int] = "all",
) -> list[Arm]:
    """`enumerate_arms` from plain name lists (`ablate profile`'s options): names may be import paths
    (`pkg.mod:Class`) or installed entry points; `positions` None: each backbone's default position;
    knobs stay at their defaults, backbones at their default build options."""
    backbones = [resolve_backbone(b) for b in backbones]
    attentions = [resolve_attention(a) for a in attentions]
    if positions is None:
        positions = list(dict.fromkeys(get_backbone(b).default_position for b in backbones))
    for name, values in (("backbone", backbones), ("attention", attentions), ("position", positions)):
        if not values:
            raise AblateError(f"at least one {name} is needed.")
    if not reductions:
        raise AblateError("at least one reduction ratio is needed.")
    for r in reductions:
        check_reduction(r)
    choices = [BackboneChoice(b) for b in dict.fromkeys(backbones)]
    return enumerate_arms(choices, attentions, positions, reductions, [stages])


def dropped_positions(backbone: str, positions: Sequence[str]) -> dict[str, str]:
    """{dropped: kept} for listed positions that put modules in the same slots on `backbone` as an earlier one
    (the same model): what `arms_from_names` leaves out, for a note."""
    kept = equivalent_positions(BackboneChoice(backbone), positions)
    return {p: k for p, k in kept.items() if p != k}


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
    collapsing = any(uses_reduction(a) and ATTENTION.is_builtin(a) for a in attentions)
    notes: list[str] = []
    for bb in backbones:
        kept_positions = equivalent_positions(bb, positions)
        notes += [f"position {p!r} does not exist on {bb.label}; not used there." for p in dict.fromkeys(positions)
                  if p not in kept_positions]
        notes += [f"on {bb.label}, position {p!r} builds the same model as {k!r}; kept once as {k!r}."
                  for p, k in kept_positions.items() if p != k]
        if not collapsing:
            continue
        n_blocks = get_backbone(bb.name).n_stages
        for position in dict.fromkeys(kept_positions.values()):
            for st in dict.fromkeys(resolve_stages(s, n_blocks) for s in stages):
                for r, k in equivalent_reductions(bb, position, st, reductions).items():
                    if r != k:
                        widths = ",".join(map(str, hidden_widths(bb, position, st, r)))
                        notes.append(f"on {bb.label} at {position}, stages {format_stages(st)}: reduction {r} gives "
                                     f"the same hidden widths ({widths}) as {k}; kept once as r{k}.")
    return notes


def check_positions_exist(backbones: Sequence[BackboneChoice], positions: Sequence[str]) -> None:
    """Every listed position must exist on at least one listed backbone (a grid may mix the conv backbones'
    positions with the ResNets'; each backbone uses its own), and every backbone needs one of them."""
    for p in positions:
        if not any(has_position(bb, p) for bb in backbones):
            allowed = sorted({q for bb in backbones for q in get_backbone(bb.name).positions})
            raise AblateError(f"position {p!r} exists on none of the backbones {', '.join(b.label for b in backbones)};"
                              f" allowed: {', '.join(allowed)}.")
    for bb in backbones:
        if positions and not any(has_position(bb, p) for p in positions):
            raise AblateError(f"none of the positions {', '.join(positions)} exists on {bb.label}; its positions: "
                              f"{', '.join(get_backbone(bb.name).positions)}.")


def plugin_sources(arms: Iterable[Arm]) -> tuple[dict[str, Any], ...]:
    """The source (package, version, file, sha256; see `ablate.plugins.Source`) of every attention module and
    backbone from outside ablate that `arms` use, once each: what the study fingerprint and the report record."""
    out: dict[tuple[str, str], dict[str, Any]] = {}
    for arm in arms:
        for registry, name in ((ATTENTION, arm.attention), (BACKBONES, arm.backbone.name)):
            if not registry.is_builtin(name):
                out.setdefault((registry.kind, name), registry.sources()[name].as_dict())
    return tuple(out.values())
