"""From a checked study document to a Study: the checks that need torch's side of ablate.

ablate.spec.schema has read every plain setting without torch; what is left needs the registries
(plugin modules and backbones loaded, positions per backbone, the arms and what collapses), the
datasets' metadata (image counts) and a trial build of plugin code. Never writes anything.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..arms import Arm, BackboneChoice, collapse_notes, enumerate_arms, plugin_sources
from ..attention import ATTENTION, declared_knobs, resolve_attention
from ..datasets import DatasetInfo
from ..device import available_cores
from ..errors import AblateError, unknown
from ..models import POSITIONS, get_backbone
from ..models.check import check_arm
from ..plugins import is_import_path
from ..recipe import check_schedule
from .fingerprint import study_fingerprint
from .located import Located
from .schema import Checked, check_document
from .sections import Tuning
from .study import Study


def parse_study(document: Any, path: Path, storage: str | None = None, threads: int | None = None) -> Study:
    """Validate a parsed study document (ablate.spec.load_study reads the file). Raises AblateError."""
    return build_study(check_document(document, path, storage, threads))


def build_study(checked: Checked) -> Study:
    """The dataset, the arms and the plugins of a checked document, and its fingerprint."""
    path, doc = checked.path, checked.document
    c = Located(path)
    dataset, info = checked.dataset, checked.info
    try:
        check_schedule(checked.recipe, has_validation=dataset.val_fraction > 0)
    except AblateError as err:
        raise c.error("dataset.val_fraction", f"is {dataset.val_fraction:g}: {err}") from None
    arms, notes = _parse_grid(c, doc["grid"], checked.reductions)
    plugins = _check_plugins(c, arms, info)
    _check_tuned_baselines(c, checked.tuning, arms)
    fingerprint = study_fingerprint(doc, checked.runtime.threads or available_cores(), checked.measure.threads,
                                    plugins)
    return Study(
        path=path,
        name=checked.name,
        description=str(doc.get("description") or ""),
        dataset=dataset,
        arms=tuple(arms),
        seeds=checked.seeds,
        recipe=checked.recipe,
        tuning=checked.tuning,
        measure=checked.measure,
        runtime=checked.runtime,
        storage=checked.storage,
        output=checked.output,
        run_dir=Path("runs") / checked.name,
        fingerprint=fingerprint,
        document=doc,
        seed_plan=checked.seed_plan,
        min_effect_pp=checked.min_effect_pp,
        notes=tuple(notes),
        artifacts=checked.artifacts,
        plugins=plugins,
        info=info,
    )


def _attention(c: Located, value: Any, key: str) -> str:
    """An attention type's registry name: a built-in name, an installed entry point, or an import path."""
    if not isinstance(value, str):
        raise c.error(key, f"expected an attention type name or an import path 'pkg.mod:Class', got {value!r}.")
    if value not in ATTENTION and not is_import_path(value):
        raise c.error(key, str(unknown("value", value, list(ATTENTION))))
    try:
        return resolve_attention(value)
    except AblateError as err:
        raise c.error(key, str(err)) from None


def _check_plugins(c: Located, arms: Sequence[Arm], info: DatasetInfo | None) -> tuple[dict[str, Any], ...]:
    """The sources of the code from outside ablate that the arms use; every arm using it is built and run once
    on the dataset's shape (when known without a scan) before anything is written."""
    plugins = plugin_sources(arms)
    outside = {(p["kind"], p["name"]) for p in plugins}
    for arm in arms if info is not None else ():
        if ("attention", arm.attention) not in outside and ("backbone", arm.backbone.name) not in outside:
            continue
        try:
            check_arm(arm.build_kwargs(), arm.id, num_classes=info.num_classes, in_channels=info.in_channels,
                      input_size=info.input_size)
        except AblateError as err:
            raise c.error("grid", str(err)) from None
    return plugins


def _parse_knobs(c: Located, knobs_doc: Any, attentions: Sequence[str]) -> dict[str, dict[str, list[Any]]]:
    """grid.knobs: attention type -> knob -> the values swept (each attention type must be in the grid)."""
    knobs: dict[str, dict[str, list[Any]]] = {}
    for given, swept in c.mapping(knobs_doc, "grid.knobs", list(knobs_doc) if isinstance(knobs_doc, Mapping) else []
                                  ).items():
        attention = _attention(c, given, f"grid.knobs.{given}")
        if attention not in attentions:
            raise c.error(f"grid.knobs.{given}", f"attention {given!r} is not in grid.attention.")
        declared = [k.name for k in declared_knobs(attention)]
        swept = c.mapping(swept, f"grid.knobs.{attention}", declared)
        knobs[attention] = {k: c.seq(v, f"grid.knobs.{attention}.{k}") for k, v in swept.items()}
    return knobs


def _parse_grid(c: Located, value: Any, reductions: Sequence[int]) -> tuple[list[Arm], list[str]]:
    """The distinct arms of the grid, and notes on what collapsed (listed twice under two names)."""
    grid = dict(value)  # a mapping with known keys: checked by ablate.spec.schema
    backbones = [c.nested(f"grid.backbones[{i}]", BackboneChoice.from_dict, entry)
                 for i, entry in enumerate(c.seq(grid["backbones"], "grid.backbones"))]
    attentions = [_attention(c, a, f"grid.attention[{i}]")
                  for i, a in enumerate(c.seq(grid["attention"], "grid.attention"))]
    known = list(dict.fromkeys([*POSITIONS, *(p for bb in backbones for p in get_backbone(bb.name).positions)]))
    default = list(dict.fromkeys(get_backbone(bb.name).default_position for bb in backbones))  # each its own
    positions = [c.choice(p, f"grid.positions[{i}]", known)
                 for i, p in enumerate(c.seq(grid.get("positions", default), "grid.positions"))]
    stages: list[Any] = []
    for s in c.seq(grid.get("stages", ["all"]), "grid.stages"):
        if s != "all" and (isinstance(s, str) or not isinstance(s, Sequence)):
            s = [s]  # a bare integer means that one block
        stages.append(s)
    knobs = _parse_knobs(c, grid.get("knobs") or {}, attentions)
    for bb in backbones:
        if not bb.bn and "after_bn" in positions:
            raise c.error("grid.positions", f"'after_bn' does not exist on {bb.label} (built without BatchNorm).")
    try:
        arms = enumerate_arms(backbones, attentions, positions, list(reductions), stages, knobs)
        notes = collapse_notes(backbones, attentions, positions, list(reductions), stages)
    except AblateError as err:
        raise c.error("grid", str(err)) from None
    if not arms:
        raise c.error("grid", "the grid is empty.")
    return arms, notes


def _check_tuned_baselines(c: Located, tuning: Tuning, arms: Sequence[Arm]) -> None:
    """Scope 'baseline' tunes each backbone's `none` arm and shares the result: every backbone needs one."""
    if not (tuning.enabled and tuning.scope == "baseline"):
        return
    with_baseline = {a.backbone.label for a in arms if a.is_baseline}
    missing = [label for label in dict.fromkeys(a.backbone.label for a in arms) if label not in with_baseline]
    if missing:
        raise c.error("tuning.scope", f"'baseline' tunes each backbone's 'none' arm, but {', '.join(missing)} has "
                                      "none; add 'none' to grid.attention or use scope per_arm or per_attention.")
