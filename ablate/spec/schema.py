"""The study file's schema, checked without torch: keys, types, ranges, NaN, static choices and built-in names.

Importing torch costs seconds and hundreds of MB, so every check that needs no model, dataset or
registry class runs here first (`check_document`), and a bad file is refused before torch is
imported. Sections that are plain settings (recipe, runtime, seeds, tuning, measure, storage,
output) are read completely here; the grid's names are checked against ablate.names' tables of
built-in names (plugins are resolved later, by the registries), and what needs the registries or
the dataset (arms, positions per backbone, image counts) is ablate.spec.build's.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..datasets.config import DataConfig
from ..datasets.info import (
    DatasetInfo,
    check_batch_size,
    check_dataset_sizes,
    check_host_fits,
    check_imagefolder,
    require_present,
)
from ..datasets.sources import SOURCES
from ..device import refuse_cuda_without_gpu
from ..files import REPORTS_DIR, check_report_dir
from ..memory import check_baselines_fit
from ..names import BUILTIN_ATTENTION, BUILTIN_BACKBONES, POSITIONS, attention_names, backbone_names, builtin_knob_error
from ..plugins import is_import_path
from ..recipe import Recipe, Runtime
from .located import Located
from .sections import MAX_PLAN_SEEDS, MAX_SEED, SEED_PLAN_KEYS, Measure, Param, SeedPlan, Tuning

NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,79}")  # always fullmatch: '$' also matches before a final newline
TOP_KEYS = ("name", "description", "dataset", "grid", "seeds", "min_effect_pp", "recipe", "tuning", "measure",
            "runtime",
            "storage", "output", "artifacts")
GRID_KEYS = ("backbones", "attention", "positions", "reductions", "stages", "knobs")
# the keys of ablate.arms.BackboneChoice (torch's side; a test keeps them equal)
DATASET_KEYS = tuple(f.name for f in dataclasses.fields(DataConfig))  # DataConfig needs no torch
BACKBONE_KEYS = ("name", "head", "bn")


@dataclass(frozen=True)
class Checked:
    """What the torch-free checks read: every section that needs no registry, and the document itself."""

    path: Path
    document: dict[str, Any]
    name: str
    dataset: DataConfig
    info: DatasetInfo | None  # None for an image folder, scanned later
    recipe: Recipe
    runtime: Runtime
    reductions: tuple[int, ...]
    seeds: tuple[int, ...]
    seed_plan: SeedPlan | None
    min_effect_pp: float
    tuning: Tuning
    measure: Measure
    storage: str
    output: Path
    artifacts: Path | None


def check_document(document: Any, path: Path, storage: str | None = None, threads: int | None = None) -> Checked:
    """Every check of a study document that needs no torch; raises AblateError naming the file and key."""
    c = Located(path)
    doc = c.mapping(document, "", TOP_KEYS, required=("name", "dataset", "grid"))
    c.usable_numbers(doc)
    name = doc["name"]
    if not isinstance(name, str) or not NAME_RE.fullmatch(name):
        raise c.error("name", f"{name!r} is not a valid study name: use letters, digits, '_', '-', '.' (max 80).")
    if isinstance(doc["dataset"], Mapping):
        c.mapping(doc["dataset"], "dataset", DATASET_KEYS)
    dataset = c.nested("dataset", DataConfig.from_dict, doc["dataset"])
    recipe = c.nested("recipe", Recipe.from_dict, doc.get("recipe") or {})
    info = dataset_sizes(path, dataset, recipe) if dataset.name in SOURCES else None  # a folder: check_data's
    runtime = c.nested("runtime", Runtime.from_dict, doc.get("runtime") or {})
    if threads is not None:
        runtime = c.nested("runtime", Runtime.from_dict, {**(doc.get("runtime") or {}), "threads": threads})
    reductions = check_grid_names(c, doc["grid"])
    seeds, seed_plan = _parse_seeds(c, doc.get("seeds", [0]))
    min_effect = c.number(doc.get("min_effect_pp", 0.5), "min_effect_pp")
    if not 0 < min_effect <= 100:
        raise c.error("min_effect_pp", f"must be a finite number of percentage points in (0, 100], got {min_effect!r}.")
    tuning = _parse_tuning(c, doc.get("tuning") or {})
    measure = c.nested("measure", Measure.from_dict, doc.get("measure") or {})
    return Checked(path=path, document=doc, name=name, dataset=dataset, info=info, recipe=recipe, runtime=runtime,
                   reductions=reductions, seeds=seeds, seed_plan=seed_plan, min_effect_pp=min_effect, tuning=tuning,
                   measure=measure,
                   storage=_storage(doc, name, storage, path), output=_output(doc, name, path),
                   artifacts=_artifacts(c, doc.get("artifacts")))


def dataset_sizes(path: Path, dataset: DataConfig, recipe: Recipe) -> DatasetInfo:
    """The image counts a dataset config gives, checked against the dataset and the batch."""
    info = check_dataset_sizes(dataset, f"{path}: dataset.")
    check_batch_size(recipe.batch_size, info, f"{path}: recipe.batch_size:")
    return info


def check_data(checked: Checked, scan_folder: bool, require_data: bool, data_dir: str | Path | None) -> Checked:
    """What `plan` and `run` check of this machine and the data, still without torch (and not `status` or
    `report`, which may read a study on a smaller machine than the one that runs it): no CUDA device asked
    for where there is no GPU driver; the dataset's files present and complete (`require_data`); an image
    folder scanned (every file decoded) and sized like a named dataset; the data and the bare backbones'
    passes within the host's memory. Returns `checked` with the folder's counts."""
    refuse_cuda_without_gpu(checked.runtime.device, f"{checked.path}: runtime.device")
    refuse_cuda_without_gpu(checked.measure.device, f"{checked.path}: measure.device")
    if require_data:
        require_present(checked.dataset, data_dir)
    info = checked.info
    if scan_folder and info is None:
        check_imagefolder(checked.dataset)
        info = dataset_sizes(checked.path, checked.dataset, checked.recipe)
    if info is not None:
        _check_memory(checked, info)
    return dataclasses.replace(checked, info=info)


def _check_memory(checked: Checked, info: DatasetInfo) -> None:
    """The host-memory bounds known before torch (ablate.preflight repeats them with the real models)."""
    remedy = "use a smaller recipe.batch_size, measure.batch_sizes, runtime.eval_batch_size or dataset.input_size"
    grid = checked.document["grid"]
    backbones = [b if isinstance(b, str) else b.get("name") for b in grid["backbones"]
                 if isinstance(b, str) or set(b) == {"name"}]  # a head or bn of its own: not the tabled model
    recipe, runtime, measure = checked.recipe, checked.runtime, checked.measure
    check_host_fits(info, recipe.batch_size, str(checked.path), remedy, backbones=backbones, device=runtime.device,
                    infer_batches=(runtime.eval_batch_size,))
    check_baselines_fit(backbones, info.shape, measure.device, train_batch=recipe.batch_size if measure.train_step
                        else None, infer_batches=tuple(measure.batch_sizes), where=f"{checked.path}: measure",
                        remedy=remedy)


def _storage(doc: Mapping[str, Any], name: str, storage: str | None, path: Path) -> str:
    """The storage URL (the override, else the file's, else runs/<name>/optuna.db), its syntax checked."""
    from ..storage import check_storage_url  # SQLAlchemy reads a server URL's parts; no torch

    if storage:  # the CLI names its --storage or $ABLATE_STORAGE when it checks them
        return check_storage_url(storage, "the storage override")
    url = doc.get("storage") or f"sqlite:///{Path('runs') / name / 'optuna.db'}"
    return check_storage_url(url, f"{path}: storage")


def _output(doc: Mapping[str, Any], name: str, path: Path) -> Path:
    return (check_report_dir(doc["output"], f"{path}: output") if doc.get("output") is not None
            else REPORTS_DIR / name)


def _artifacts(c: Located, artifacts: Any) -> Path | None:
    if artifacts is not None and (not isinstance(artifacts, str) or not artifacts.strip() or "\x00" in artifacts):
        raise c.error("artifacts",
                      f"must be a folder path (a shared folder every worker can write), got {artifacts!r}.")
    return Path(artifacts) if artifacts is not None else None


def check_grid_names(c: Located, value: Any) -> tuple[int, ...]:
    """The grid's keys, and its names where they are built-in: backbones, attention types, their knobs and
    choice-knob values, positions (when every backbone is built-in). Returns the reduction ratios."""
    grid = c.mapping(value, "grid", GRID_KEYS, required=("backbones", "attention"))
    builtin_only = True
    for i, entry in enumerate(c.seq(grid["backbones"], "grid.backbones")):
        key = f"grid.backbones[{i}]"
        if isinstance(entry, Mapping):
            c.mapping(entry, key, BACKBONE_KEYS)
        name = entry.get("name") if isinstance(entry, Mapping) else entry
        builtin_only = builtin_only and name in BUILTIN_BACKBONES
        if isinstance(name, str) and not is_import_path(name):
            c.choice(name, f"{key}.name", backbone_names())
    for i, name in enumerate(c.seq(grid["attention"], "grid.attention")):
        _check_attention_name(c, name, f"grid.attention[{i}]")
    if builtin_only:
        for i, p in enumerate(c.seq(grid.get("positions", []), "grid.positions", nonempty=False)):
            c.choice(p, f"grid.positions[{i}]", POSITIONS)
    knobs = grid.get("knobs") or {}
    for given, swept in c.mapping(knobs, "grid.knobs", list(knobs) if isinstance(knobs, Mapping) else []).items():
        if given in BUILTIN_ATTENTION:
            _check_builtin_knobs(c, given, swept)
    return tuple(c.integer(r, f"grid.reductions[{i}]", 1)
                 for i, r in enumerate(c.seq(grid.get("reductions", [16]), "grid.reductions")))


def _check_attention_name(c: Located, value: Any, key: str) -> None:
    if not isinstance(value, str):
        raise c.error(key, f"expected an attention type name or an import path 'pkg.mod:Class', got {value!r}.")
    if not is_import_path(value):
        c.choice(value, key, attention_names())


def _check_builtin_knobs(c: Located, attention: str, swept: Any) -> None:
    """A built-in attention type's knob names, and the values of its choice knobs."""
    for knob, values in c.mapping(swept, f"grid.knobs.{attention}", list(BUILTIN_ATTENTION[attention])).items():
        for v in c.seq(values, f"grid.knobs.{attention}.{knob}"):
            problem = builtin_knob_error(attention, knob, v)
            if problem is not None:
                raise c.error(f"grid.knobs.{attention}.{knob}", problem)


def _parse_seeds(c: Located, value: Any) -> tuple[tuple[int, ...], SeedPlan | None]:
    """A list of distinct seeds, or {min, max, target_ci_pp} (seeds 0 .. max-1, added on demand)."""
    if isinstance(value, Mapping):
        m = c.mapping(value, "seeds", SEED_PLAN_KEYS, required=SEED_PLAN_KEYS)
        low = c.integer(m["min"], "seeds.min", 2, MAX_PLAN_SEEDS)
        high = c.integer(m["max"], "seeds.max", low, MAX_PLAN_SEEDS)
        target = c.number(m["target_ci_pp"], "seeds.target_ci_pp")
        if not target > 0:
            raise c.error("seeds.target_ci_pp", f"must be a finite number of percentage points > 0, got {target!r}.")
        return tuple(range(high)), SeedPlan(low, high, target)
    listed = c.seq(value, "seeds")
    if len(listed) > MAX_PLAN_SEEDS:  # the same bound as a seed plan's max: every seed is one run per arm
        raise c.error("seeds", f"{len(listed):,} seeds listed; at most {MAX_PLAN_SEEDS:,} per arm (a seed plan's max "
                               "has the same bound).")
    seeds = tuple(c.integer(s, f"seeds[{i}]", 0, MAX_SEED) for i, s in enumerate(listed))
    if len(set(seeds)) != len(seeds):
        raise c.error("seeds", f"seeds must be distinct, got {list(seeds)}.")
    return seeds, None


def _parse_tuning(c: Located, value: Any) -> Tuning:
    """The tuning section; a section that is given is enabled unless it says otherwise."""
    t = c.mapping(value, "tuning", [f.name for f in dataclasses.fields(Tuning)])
    space = _parse_space(c, t.get("space") or {})
    return c.nested("tuning", Tuning.from_dict, {**t, "enabled": t.get("enabled", bool(t)), "space": space})


def _parse_space(c: Located, value: Any) -> tuple[Param, ...]:
    """tuning.space: recipe key -> Param; every value a Param can take must be a valid recipe value."""
    recipe_fields = {f.name: f for f in dataclasses.fields(Recipe)}
    space = []
    for name, doc in c.mapping(value, "tuning.space", list(recipe_fields)).items():
        key = f"tuning.space.{name}"
        param = c.nested(key, Param.from_dict, doc)
        param = dataclasses.replace(param, name=name, integer=recipe_fields[name].type in (int, "int"))
        for v in param.values():
            c.nested(key, Recipe.from_dict, {name: v})
        space.append(param)
    return tuple(space)
