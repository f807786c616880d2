"""The study file: YAML in studies/, validated on load, the single source of truth for a study.

Loading is safe (yaml.safe_load, no code from YAML) and strict: an unknown key, name, type or range
raises AblateError naming the file, the key path and what is allowed, before anything is written.
The validated spec has a fingerprint, stored with every trial, so a changed file is detected.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from .arms import Arm, BackboneChoice, enumerate_arms
from .attention import ATTENTION, get_attention
from .data import DataConfig
from .errors import AblateError, did_you_mean, unknown
from .models import BACKBONES, POSITIONS, get_backbone
from .storage import check_storage_url
from .timing import PRECISIONS, available_cores
from .train import Recipe, Runtime, check_schedule

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,79}$")
SCOPES = ("per_arm", "baseline", "per_attention")
PRUNERS = ("median", "hyperband", "none")
TOP_KEYS = ("name", "description", "dataset", "grid", "seeds", "min_effect_pp", "recipe", "tuning", "measure", "runtime",
            "storage", "output")
MAX_SEED = 2**63 - 1  # torch.manual_seed's range


@dataclass(frozen=True)
class Param:
    """One tuned hyperparameter: a float/int range (optionally log) or a list of choices."""

    name: str
    low: float | None = None
    high: float | None = None
    log: bool = False
    integer: bool = False
    choices: tuple[Any, ...] | None = None


@dataclass(frozen=True)
class Tuning:
    enabled: bool = False
    scope: str = "baseline"
    n_trials: int = 8
    epochs: int = 2
    sampler_seed: int = 0
    pruner: str = "median"
    space: tuple[Param, ...] = ()


@dataclass(frozen=True)
class Measure:
    """How the profile phase times arms (see ablate.timing): interleaved rounds, fixed threads."""

    device: str = "auto"
    batch_sizes: tuple[int, ...] = (1, 64)
    block_time: float = 0.05  # seconds per timed block
    rounds: int = 10  # interleaved rounds per backbone, batch size and training step
    threads: int = 1  # torch intra-op threads while timing (1: reproducible on shared machines)
    train_step: bool = True  # also time a training step at the recipe's batch size
    precision: str = "as_trained"  # as_trained | fp32 | bf16 | fp16
    channels_last: bool | None = None  # None: as trained
    cuda_graph: bool = False  # CUDA: batch latency replayed from captured CUDA graphs


@dataclass(frozen=True)
class SeedPlan:
    """Precision-targeted seeds: every arm gets `min`; arms whose paired-difference CI half-width
    still exceeds `target_ci_pp` get more, up to `max`. Stops on precision, never on p-values."""

    min: int
    max: int
    target_ci_pp: float


@dataclass(frozen=True)
class Study:
    """A validated study file."""

    path: Path
    name: str
    description: str
    dataset: DataConfig
    arms: tuple[Arm, ...]
    seeds: tuple[int, ...]  # every seed an arm may get (with a SeedPlan: the first `min` always, the rest on demand)
    recipe: Recipe
    tuning: Tuning
    measure: Measure
    runtime: Runtime
    storage: str
    output: Path
    run_dir: Path
    fingerprint: str
    document: Mapping[str, Any]
    seed_plan: SeedPlan | None = None  # None: every arm gets every seed
    min_effect_pp: float = 0.5  # the effect the report asks "how many seeds would detect it?" about

    @property
    def baselines(self) -> dict[str, Arm]:
        return {a.backbone.label: a for a in self.arms if a.is_baseline}


class _Checker:
    """Type and key checks that all name the file and the key path."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def error(self, key: str, message: str) -> AblateError:
        return AblateError(f"{self.path}: {key}: {message}")

    def mapping(self, value: Any, key: str, allowed: Sequence[str], required: Sequence[str] = ()) -> dict[str, Any]:
        if not isinstance(value, Mapping):
            raise self.error(key, f"expected a mapping with keys {', '.join(allowed)}, got {type(value).__name__}.")
        for k in value:
            if k not in allowed:
                raise self.error(
                    f"{key}.{k}" if key else str(k),
                    f"unknown key{did_you_mean(str(k), allowed)}; allowed keys: {', '.join(allowed)}.",
                )
        for k in required:
            if k not in value:
                raise self.error(f"{key}.{k}" if key else k, "required key is missing.")
        return dict(value)

    def seq(self, value: Any, key: str, *, nonempty: bool = True) -> list[Any]:
        if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
            value = [value]
        if nonempty and not value:
            raise self.error(key, "must not be empty.")
        return list(value)

    def integer(self, value: Any, key: str, low: int | None = None) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.error(key, f"expected an integer, got {value!r}.")
        if low is not None and value < low:
            raise self.error(key, f"must be >= {low}, got {value}.")
        return value

    def number(self, value: Any, key: str) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise self.error(key, f"expected a number, got {value!r}.")
        return float(value)

    def choice(self, value: Any, key: str, allowed: Sequence[str]) -> str:
        if value not in allowed:
            raise self.error(key, str(unknown("value", value, allowed)))
        return str(value)

    def nested(self, key: str, build: Any, value: Any) -> Any:
        """Run a section's own from_dict, re-raising its error with the file and section named."""
        try:
            return build(value, where=key)
        except AblateError as err:
            raise AblateError(f"{self.path}: {err}") from None


def load_study(path: str | Path, storage: str | None = None, threads: int | None = None) -> Study:
    """Load and validate a study file. Raises AblateError; never writes anything.

    `storage` and `threads` (training threads) override the file's; threads are part of the fingerprint.
    """
    path = Path(path)
    if not path.is_file():
        raise AblateError(f"{path}: study file not found.")
    try:
        document = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise AblateError(f"{path}: invalid YAML: {err}") from None
    return parse_study(document, path, storage, threads)


def parse_study(document: Any, path: Path, storage: str | None = None, threads: int | None = None) -> Study:
    c = _Checker(path)
    doc = c.mapping(document, "", TOP_KEYS, required=("name", "dataset", "grid"))
    name = doc["name"]
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise c.error("name", f"{name!r} is not a valid study name: use letters, digits, '_', '-', '.' (max 80).")

    dataset = c.nested("dataset", DataConfig.from_dict, doc["dataset"])
    recipe = c.nested("recipe", Recipe.from_dict, doc.get("recipe") or {})
    runtime = c.nested("runtime", Runtime.from_dict, doc.get("runtime") or {})
    if threads is not None:
        runtime = c.nested("runtime", Runtime.from_dict, {**(doc.get("runtime") or {}), "threads": threads})
    try:
        check_schedule(recipe, has_validation=dataset.val_fraction > 0)
    except AblateError as err:
        raise c.error("dataset.val_fraction", f"is {dataset.val_fraction:g}: {err}") from None
    arms = _parse_grid(c, doc["grid"])
    seeds, seed_plan = _parse_seeds(c, doc.get("seeds", [0]))
    min_effect = c.number(doc.get("min_effect_pp", 0.5), "min_effect_pp")
    if not (math.isfinite(min_effect) and 0 < min_effect <= 100):
        raise c.error("min_effect_pp", f"must be a finite number of percentage points in (0, 100], got {min_effect!r}.")
    tuning = _parse_tuning(c, doc.get("tuning") or {})
    measure = _parse_measure(c, doc.get("measure") or {})

    run_dir = Path("runs") / name
    storage_url = storage or doc.get("storage") or f"sqlite:///{run_dir / 'optuna.db'}"
    check_storage_url(storage_url, f"{path}: storage")
    output = _safe_relative(c, doc.get("output"), "output") if doc.get("output") else Path("reports") / name
    fingerprint_source = {k: v for k, v in doc.items() if k not in ("description", "storage", "output")}
    # threads change float results (training) and timing conditions: part of what a result means
    runtime_doc = {k: v for k, v in (doc.get("runtime") or {}).items() if k != "threads"}  # threads: resolved below
    fingerprint_source.pop("runtime", None)
    if runtime_doc:
        fingerprint_source["runtime"] = runtime_doc
    fingerprint_source["threads"] = {"train": runtime.threads or available_cores(), "timing": measure.threads}
    fingerprint = hashlib.sha256(json.dumps(fingerprint_source, sort_keys=True, default=str).encode()).hexdigest()[:16]
    return Study(
        path=path,
        name=name,
        description=str(doc.get("description") or ""),
        dataset=dataset,
        arms=tuple(arms),
        seeds=seeds,
        recipe=recipe,
        tuning=tuning,
        measure=measure,
        runtime=runtime,
        storage=storage_url,
        output=output,
        run_dir=run_dir,
        fingerprint=fingerprint,
        document=doc,
        seed_plan=seed_plan,
        min_effect_pp=min_effect,
    )


def _parse_seeds(c: _Checker, value: Any) -> tuple[tuple[int, ...], SeedPlan | None]:
    """A list of distinct seeds, or {min, max, target_ci_pp} (seeds 0 .. max-1, added on demand)."""
    if isinstance(value, Mapping):
        m = c.mapping(value, "seeds", ("min", "max", "target_ci_pp"), required=("min", "max", "target_ci_pp"))
        low = c.integer(m["min"], "seeds.min", 2)
        high = c.integer(m["max"], "seeds.max", low)
        if high > 1000:
            raise c.error("seeds.max", f"must be <= 1000, got {high}.")
        target = c.number(m["target_ci_pp"], "seeds.target_ci_pp")
        if not (math.isfinite(target) and target > 0):
            raise c.error("seeds.target_ci_pp", f"must be a finite number of percentage points > 0, got {target!r}.")
        return tuple(range(high)), SeedPlan(low, high, target)
    seeds = tuple(c.integer(s, f"seeds[{i}]", 0) for i, s in enumerate(c.seq(value, "seeds")))
    for i, s in enumerate(seeds):
        if s > MAX_SEED:
            raise c.error(f"seeds[{i}]", f"{s} is beyond the largest seed torch accepts (2**63 - 1).")
    if len(set(seeds)) != len(seeds):
        raise c.error("seeds", f"seeds must be distinct, got {list(seeds)}.")
    return seeds, None


def _safe_relative(c: _Checker, value: Any, key: str) -> Path:
    """A relative path inside the project (no absolute paths, no '..'): reports never escape."""
    path = Path(str(value))
    if not isinstance(value, str) or path.is_absolute() or ".." in path.parts:
        raise c.error(key, f"{value!r} must be a relative path without '..' (e.g. reports/my_study).")
    return path


def _parse_grid(c: _Checker, value: Any) -> list[Arm]:
    grid = c.mapping(value, "grid", ("backbones", "attention", "positions", "reductions", "stages", "knobs"),
                     required=("backbones", "attention"))
    backbones = []
    for i, entry in enumerate(c.seq(grid["backbones"], "grid.backbones")):
        key = f"grid.backbones[{i}]"
        if isinstance(entry, str):
            entry = {"name": entry}
        entry = c.mapping(entry, key, ("name", "head", "bn"), required=("name",))
        bb_name = c.choice(entry["name"], f"{key}.name", list(BACKBONES))
        head = entry.get("head")
        if head is not None:
            c.choice(head, f"{key}.head", get_backbone(bb_name).heads)
        bn = entry.get("bn", True)
        if not isinstance(bn, bool):
            raise c.error(f"{key}.bn", f"expected true or false, got {bn!r}.")
        backbones.append(BackboneChoice(bb_name, head, bn))

    attentions = [c.choice(a, f"grid.attention[{i}]", list(ATTENTION))
                  for i, a in enumerate(c.seq(grid["attention"], "grid.attention"))]
    positions = [c.choice(p, f"grid.positions[{i}]", list(POSITIONS))
                 for i, p in enumerate(c.seq(grid.get("positions", ["after_relu"]), "grid.positions"))]
    reductions = [c.integer(r, f"grid.reductions[{i}]", 1)
                  for i, r in enumerate(c.seq(grid.get("reductions", [16]), "grid.reductions"))]
    stages: list[Any] = []
    for s in c.seq(grid.get("stages", ["all"]), "grid.stages"):
        if s != "all" and (isinstance(s, str) or not isinstance(s, Sequence)):
            s = [s]  # a bare integer means that one block
        stages.append(s)

    knobs_doc = c.mapping(grid.get("knobs") or {}, "grid.knobs", list(ATTENTION))
    knobs: dict[str, dict[str, list[Any]]] = {}
    for attention, swept in knobs_doc.items():
        if attention not in attentions:
            raise c.error(f"grid.knobs.{attention}", f"attention {attention!r} is not in grid.attention.")
        declared = [k.name for k in get_attention(attention).knobs]
        swept = c.mapping(swept, f"grid.knobs.{attention}", declared)
        knobs[attention] = {k: c.seq(v, f"grid.knobs.{attention}.{k}") for k, v in swept.items()}
    for bb in backbones:
        if not bb.bn and "after_bn" in positions:
            raise c.error("grid.positions", f"'after_bn' does not exist on {bb.label} (built without BatchNorm).")
    try:
        arms = enumerate_arms(backbones, attentions, positions, reductions, stages, knobs)
    except AblateError as err:
        raise c.error("grid", str(err)) from None
    if not arms:
        raise c.error("grid", "the grid is empty.")
    return arms


def _parse_tuning(c: _Checker, value: Any) -> Tuning:
    t = c.mapping(value, "tuning", ("enabled", "scope", "n_trials", "epochs", "sampler_seed", "pruner", "space"))
    enabled = t.get("enabled", bool(t))
    if not isinstance(enabled, bool):
        raise c.error("tuning.enabled", f"expected true or false, got {enabled!r}.")
    recipe_fields = {f.name: f for f in dataclasses.fields(Recipe)}
    space = []
    for pname, pdoc in c.mapping(t.get("space") or {}, "tuning.space", list(recipe_fields)).items():
        key = f"tuning.space.{pname}"
        p = c.mapping(pdoc, key, ("low", "high", "log", "choices"))
        if "choices" in p:
            if len(p) > 1:
                raise c.error(key, "give either choices or low/high, not both.")
            choices = tuple(c.seq(p["choices"], f"{key}.choices"))
            for ch in choices:  # each choice must be a valid recipe value
                c.nested(key, Recipe.from_dict, {pname: ch})
            space.append(Param(pname, choices=choices))
            continue
        if "low" not in p or "high" not in p:
            raise c.error(key, "a range needs both low and high (or use choices).")
        integer = recipe_fields[pname].type in (int, "int")
        low, high = c.number(p["low"], f"{key}.low"), c.number(p["high"], f"{key}.high")
        if low > high:
            raise c.error(key, f"low ({low:g}) must be <= high ({high:g}).")
        log = p.get("log", False)
        if not isinstance(log, bool):
            raise c.error(f"{key}.log", f"expected true or false, got {log!r}.")
        if log and low <= 0:
            raise c.error(f"{key}.low", "a log-scale range needs low > 0.")
        c.nested(key, Recipe.from_dict, {pname: int(low) if integer else low})
        c.nested(key, Recipe.from_dict, {pname: int(high) if integer else high})
        space.append(Param(pname, low, high, log, integer))
    tuning = Tuning(
        enabled=enabled,
        scope=c.choice(t.get("scope", "baseline"), "tuning.scope", SCOPES),
        n_trials=c.integer(t.get("n_trials", 8), "tuning.n_trials", 1),
        epochs=c.integer(t.get("epochs", 2), "tuning.epochs", 1),
        sampler_seed=c.integer(t.get("sampler_seed", 0), "tuning.sampler_seed", 0),
        pruner=c.choice(t.get("pruner", "median"), "tuning.pruner", PRUNERS),
        space=tuple(space),
    )
    if enabled and not space:
        raise c.error("tuning.space", "tuning is enabled but the search space is empty.")
    return tuning


def _parse_measure(c: _Checker, value: Any) -> Measure:
    keys = [f.name for f in dataclasses.fields(Measure)]
    m = c.mapping(value, "measure", keys)
    d = Measure()
    sizes = tuple(c.integer(b, f"measure.batch_sizes[{i}]", 1)
                  for i, b in enumerate(c.seq(m.get("batch_sizes", list(d.batch_sizes)), "measure.batch_sizes")))
    block = c.number(m.get("block_time", d.block_time), "measure.block_time")
    if not (math.isfinite(block) and 0 < block <= 60):
        raise c.error("measure.block_time", f"must be a finite number of seconds in (0, 60], got {block!r}.")
    device = m.get("device", d.device)
    if not (device in ("auto", "cpu", "cuda") or isinstance(device, str) and re.fullmatch(r"cuda:\d+", device)):
        raise c.error("measure.device", f"unknown value {device!r}; allowed: auto, cpu, cuda, cuda:<index>.")
    flags = {}
    for key in ("train_step", "cuda_graph"):
        flags[key] = m.get(key, getattr(d, key))
        if not isinstance(flags[key], bool):
            raise c.error(f"measure.{key}", f"expected true or false, got {flags[key]!r}.")
    channels_last = m.get("channels_last")
    if channels_last is not None and not isinstance(channels_last, bool):
        raise c.error("measure.channels_last", f"expected true, false or null (as trained), got {channels_last!r}.")
    return Measure(
        device=device,
        batch_sizes=sizes,
        block_time=block,
        rounds=c.integer(m.get("rounds", d.rounds), "measure.rounds", 1),
        threads=c.integer(m.get("threads", d.threads), "measure.threads", 1),
        train_step=flags["train_step"],
        precision=c.choice(m.get("precision", d.precision), "measure.precision", ("as_trained", *PRECISIONS)),
        channels_last=channels_last,
        cuda_graph=flags["cuda_graph"],
    )
