"""The study file: YAML in studies/, validated on load, the single source of truth for a study.

Loading is safe (PyYAML's SafeLoader, no code from YAML) and strict: an unknown key, name, type or
range raises AblateError naming the file, the key path and what is allowed, before anything is
written. Values that parse but cannot work are refused too: a key given twice (YAML keeps the last
silently), anchors and aliases (nested aliases expand a small file to gigabytes), non-UTF-8 or binary
files, NaN, infinities, integers beyond 64 bits, and image counts beyond what the dataset holds.
The validated spec has a fingerprint, stored with every trial, so a changed file is detected.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import stat
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from .arms import Arm, BackboneChoice, collapse_notes, enumerate_arms, plugin_sources
from .attention import ATTENTION, declared_knobs, resolve_attention
from .config import (
    INT64_MAX,
    ConfigError,
    as_float,
    check_choice,
    check_range,
    check_types,
    config_from_dict,
    is_integer,
    is_number,
    is_unusable_number,
    unusable_note,
)
from .data import SOURCES, DataConfig, DatasetInfo, dataset_info, get_source
from .device import available_cores, check_device_setting
from .errors import AblateError, did_you_mean, unknown
from .files import REPORTS_DIR, check_report_dir
from .models import POSITIONS, get_backbone
from .models.check import check_arm
from .plugins import is_import_path
from .precision import PRECISIONS
from .recipe import Recipe, Runtime, check_schedule
from .storage import check_storage_url

NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,79}")  # always fullmatch: '$' also matches before a final newline
SCOPES = ("per_arm", "baseline", "per_attention")
PRUNERS = ("median", "hyperband", "none")
TOP_KEYS = ("name", "description", "dataset", "grid", "seeds", "min_effect_pp", "recipe", "tuning", "measure",
            "runtime",
            "storage", "output", "artifacts")
GRID_KEYS = ("backbones", "attention", "positions", "reductions", "stages", "knobs")
SEED_PLAN_KEYS = ("min", "max", "target_ci_pp")
PARAM_KEYS = ("low", "high", "log", "choices")
MEASURE_PRECISIONS = ("as_trained", *PRECISIONS)
MAX_SEED = INT64_MAX  # torch.manual_seed's range
MAX_SAMPLER_SEED = 2**32 - 1  # numpy's RandomState, behind Optuna's TPE sampler
MAX_PLAN_SEEDS = 1000  # seeds.max of a precision-targeted seed plan
MAX_STUDY_BYTES = 1 << 20  # study files are a few KiB; a bigger file is a mistake (or an attack on the parser)


@dataclass(frozen=True)
class Param:
    """One tuned hyperparameter: a float/int range (optionally log) or a list of choices."""

    name: str = ""  # the recipe key; set from the key of tuning.space
    low: float | None = None
    high: float | None = None
    log: bool = False
    integer: bool = False  # drawn as an integer (the recipe field is an int)
    choices: tuple[Any, ...] | None = None

    def __post_init__(self) -> None:
        check_types(self)
        if self.choices is not None:
            if self.low is not None or self.high is not None:
                raise AblateError("give either choices or low/high, not both.")
            if not self.choices:
                raise ConfigError("choices", "must not be empty.")
            return
        if self.low is None or self.high is None:
            raise AblateError("a range needs both low and high (or use choices).")
        if self.low > self.high:
            raise AblateError(f"low ({self.low:g}) must be <= high ({self.high:g}).")
        if self.log and self.low <= 0:
            raise ConfigError("low", "a log-scale range needs low > 0.")

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], where: str = "") -> Param:
        return config_from_dict(cls, d, where, keys=PARAM_KEYS)

    def values(self) -> tuple[Any, ...]:
        """The choices, or the range's ends (as the recipe field's type): each must be a valid recipe value."""
        if self.choices is not None:
            return self.choices
        assert self.low is not None and self.high is not None
        return (int(self.low), int(self.high)) if self.integer else (self.low, self.high)


@dataclass(frozen=True)
class Tuning:
    """Optuna tuning on the validation split before the final runs; the tuned values replace the recipe's."""

    enabled: bool = False  # default: true when a tuning section is given
    scope: str = "baseline"  # baseline: each backbone's 'none' arm, shared; per_attention; per_arm
    n_trials: int = 8  # trials per tuning group
    epochs: int = 2  # epochs per tuning trial
    sampler_seed: int = 0  # TPE sampler seed, 0 to 2**32-1
    pruner: str = "median"  # stops unpromising trials early; none keeps every trial
    space: tuple[Param, ...] = ()  # recipe key -> {low, high, log} or {choices}

    def __post_init__(self) -> None:
        check_types(self)
        check_choice("scope", self.scope, SCOPES)
        check_range("n_trials", self.n_trials, 1)
        check_range("epochs", self.epochs, 1)
        check_range("sampler_seed", self.sampler_seed, 0, MAX_SAMPLER_SEED)
        check_choice("pruner", self.pruner, PRUNERS)
        if self.enabled and not self.space:
            raise ConfigError("space", "tuning is enabled but the search space is empty.")

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], where: str = "") -> Tuning:
        return config_from_dict(cls, d, where)


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

    def __post_init__(self) -> None:
        check_types(self)
        check_device_setting("device", self.device)
        if not self.batch_sizes:
            raise ConfigError("batch_sizes", "must not be empty.")
        for i, size in enumerate(self.batch_sizes):
            check_range(f"batch_sizes[{i}]", size, 1)
        check_range("block_time", self.block_time, 0.0, 60.0, low_open=True)
        check_range("rounds", self.rounds, 1)
        check_range("threads", self.threads, 1)
        check_choice("precision", self.precision, MEASURE_PRECISIONS)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], where: str = "") -> Measure:
        return config_from_dict(cls, d, where)


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
    notes: tuple[str, ...] = ()  # what the grid listed but collapsed (same model under two names), for `plan`
    artifacts: Path | None = None  # a shared artifact folder (several machines); None: beside the storage file
    plugins: tuple[dict[str, Any], ...] = ()  # source of each module/backbone from outside ablate (ablate.plugins)

    @property
    def baselines(self) -> dict[str, Arm]:
        return {a.backbone.label: a for a in self.arms if a.is_baseline}


class _Checker:
    """Type and key checks that all name the file and the key path."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def error(self, key: str, message: str) -> AblateError:
        return AblateError(f"{self.path}: {key}: {message}" if key else f"{self.path}: {message}")

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

    def integer(self, value: Any, key: str, low: int | None = None, high: int = INT64_MAX) -> int:
        if not is_integer(value):
            raise self.error(key, f"expected an integer, got {value!r}{unusable_note(value)}.")
        if low is not None and value < low:
            raise self.error(key, f"must be >= {low}, got {value}.")
        if value > high:
            raise self.error(key, f"must be <= {high}, got {value}.")
        return value

    def number(self, value: Any, key: str) -> float:
        value = as_float(value)
        if not is_number(value):
            raise self.error(key, f"expected a finite number, got {value!r}{unusable_note(value)}.")
        return float(value)

    def usable_numbers(self, value: Any, key: str = "") -> None:
        """Refuse NaN, infinities and integers beyond 64 bits anywhere in the document, naming the key path.

        Every section checks its own numbers too; this walk also covers values handed on unchecked
        (attention knobs, tuning choices) and gives every such mistake the same message.
        """
        if isinstance(value, Mapping):
            for k, v in value.items():
                self.usable_numbers(v, f"{key}.{k}" if key else str(k))
        elif isinstance(value, (list, tuple)):
            for i, v in enumerate(value):
                self.usable_numbers(v, f"{key}[{i}]")
        elif is_unusable_number(value):
            raise self.error(key, f"{value!r} is not a usable number: NaN, infinities and integers beyond 64 bits "
                                  "cannot work.")

    def choice(self, value: Any, key: str, allowed: Sequence[str]) -> str:
        if value not in allowed:
            raise self.error(key, str(unknown("value", value, allowed)))
        return str(value)

    def attention(self, value: Any, key: str) -> str:
        """An attention type's registry name: a built-in name, an installed entry point, or an import path."""
        if not isinstance(value, str):
            raise self.error(key, f"expected an attention type name or an import path 'pkg.mod:Class', got {value!r}.")
        if value not in ATTENTION and not is_import_path(value):
            raise self.error(key, str(unknown("value", value, list(ATTENTION))))
        try:
            return resolve_attention(value)
        except AblateError as err:
            raise self.error(key, str(err)) from None

    def nested(self, key: str, build: Any, value: Any) -> Any:
        """Run a section's own from_dict, re-raising its error with the file and section named."""
        try:
            return build(value, where=key)
        except AblateError as err:
            raise AblateError(f"{self.path}: {err}") from None


class StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses what a study file never needs and PyYAML would accept silently.

    A key given twice is an error (PyYAML keeps the last one). Anchors and aliases are refused while
    composing, before anything is built or converted to a string: a few nested aliases ("billion
    laughs") expand a small file to gigabytes. The pure-Python loader, because the C one composes in C.
    """

    def compose_node(self, parent: Any, index: Any) -> Any:
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None) is not None:
            raise yaml.composer.ComposerError(
                None, None, "anchors and aliases (&name, *name, <<: *name) are not allowed in a study file; "
                "write the values out", event.start_mark)
        return super().compose_node(parent, index)

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            try:
                duplicate = key in seen
            except TypeError:
                continue  # an unhashable key: SafeConstructor reports it
            if duplicate:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r} (YAML would keep only the last value)", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def read_study_text(path: Path) -> str:
    """The file's text: a readable regular file of UTF-8 (a BOM is fine), with no NUL byte, under 1 MiB."""
    try:  # O_NONBLOCK: opening a FIFO for reading would otherwise wait for a writer, forever
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        with os.fdopen(fd, "rb") as fh:
            if not stat.S_ISREG(os.fstat(fh.fileno()).st_mode):
                raise AblateError(f"{path}: not a regular file (a FIFO, device or socket); give a study file "
                                  "(studies/*.yaml).")
            os.set_blocking(fh.fileno(), True)
            data = fh.read(MAX_STUDY_BYTES + 1)
    except FileNotFoundError:
        raise AblateError(f"{path}: study file not found.") from None
    except IsADirectoryError:
        raise AblateError(f"{path}: is a folder; give a study file (studies/*.yaml).") from None
    except OSError as err:
        raise AblateError(f"{path}: cannot read the study file: {err.strerror or err}.") from None
    if len(data) > MAX_STUDY_BYTES:
        raise AblateError(f"{path}: larger than {MAX_STUDY_BYTES / 2**20:g} MiB; a study file is a short YAML file.")
    if b"\x00" in data:
        raise AblateError(f"{path}: not a UTF-8 text file (it holds NUL bytes: binary, or UTF-16/UTF-32 text); "
                          "save the study file as UTF-8 YAML.")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise AblateError(f"{path}: not a UTF-8 text file (byte 0x{data[err.start]:02x} at offset {err.start} is "
                          "not UTF-8); save the study file as UTF-8 YAML.") from None


def parse_yaml(text: str, path: Path) -> Any:
    """One YAML document through StrictLoader; every YAML error becomes one line naming the file and line."""
    try:
        return yaml.load(text, Loader=StrictLoader)  # noqa: S506 (StrictLoader is a SafeLoader)
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        where = f", line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = "; ".join(str(p) for p in (err.context, err.problem) if p)
        raise AblateError(f"{path}{where}: invalid YAML: {problem}.") from None
    except yaml.reader.ReaderError as err:
        raise AblateError(f"{path}: invalid YAML: character #x{err.character:04x} at position {err.position} is "
                          "not allowed in YAML.") from None
    except yaml.YAMLError as err:
        raise AblateError(f"{path}: invalid YAML: {' '.join(str(err).split())}") from None
    except RecursionError:
        raise AblateError(f"{path}: invalid YAML: nested too deeply for a study file.") from None
    except (ValueError, OverflowError) as err:  # a scalar PyYAML cannot build: a 5000-digit int, a 13th month
        raise AblateError(f"{path}: invalid YAML: a value cannot be read: {err}.") from None


def load_study(path: str | Path, storage: str | None = None, threads: int | None = None) -> Study:
    """Load and validate a study file. Raises AblateError; never writes anything.

    `storage` and `threads` (training threads) override the file's; threads are part of the fingerprint.
    """
    path = Path(path)
    return parse_study(parse_yaml(read_study_text(path), path), path, storage, threads)


def check_dataset_sizes(config: DataConfig, where: str) -> DatasetInfo:
    """Requested image counts against what the dataset holds, from its metadata alone (no image is read).

    Raises AblateError naming `where` + the key, the requested and the available count, so a study
    asking for 100,000 of Fashion-MNIST's 60,000 training images fails before anything is written.
    """
    source = get_source(config.name)
    for key, split, size, available in (("train_size", "training", config.train_size, source.counts[0]),
                                        ("test_size", "test", config.test_size, source.counts[1])):
        if size is not None and not source.num_classes <= size <= available:
            raise AblateError(f"{where}{key}: {size} images requested, but {config.name} has {available} {split} "
                              f"images; allowed: {source.num_classes} (one per class) to {available}.")
    try:
        return dataset_info(config)  # raises when val_fraction leaves no image to train or validate on
    except AblateError as err:
        raise AblateError(f"{where}val_fraction: {err}") from None


def parse_study(document: Any, path: Path, storage: str | None = None, threads: int | None = None) -> Study:
    c = _Checker(path)
    doc = c.mapping(document, "", TOP_KEYS, required=("name", "dataset", "grid"))
    c.usable_numbers(doc)
    name = doc["name"]
    if not isinstance(name, str) or not NAME_RE.fullmatch(name):
        raise c.error("name", f"{name!r} is not a valid study name: use letters, digits, '_', '-', '.' (max 80).")

    dataset = c.nested("dataset", DataConfig.from_dict, doc["dataset"])
    info = None  # known sizes; an imagefolder is scanned (and checked) by `plan` and the runs
    if dataset.name in SOURCES:
        info = check_dataset_sizes(dataset, f"{path}: dataset.")
    recipe = c.nested("recipe", Recipe.from_dict, doc.get("recipe") or {})
    runtime = c.nested("runtime", Runtime.from_dict, doc.get("runtime") or {})
    if threads is not None:
        runtime = c.nested("runtime", Runtime.from_dict, {**(doc.get("runtime") or {}), "threads": threads})
    try:
        check_schedule(recipe, has_validation=dataset.val_fraction > 0)
    except AblateError as err:
        raise c.error("dataset.val_fraction", f"is {dataset.val_fraction:g}: {err}") from None
    arms, notes = _parse_grid(c, doc["grid"])
    plugins = _check_plugins(c, arms, info)
    seeds, seed_plan = _parse_seeds(c, doc.get("seeds", [0]))
    min_effect = c.number(doc.get("min_effect_pp", 0.5), "min_effect_pp")
    if not 0 < min_effect <= 100:
        raise c.error("min_effect_pp", f"must be a finite number of percentage points in (0, 100], got {min_effect!r}.")
    tuning = _parse_tuning(c, doc.get("tuning") or {})
    _check_tuned_baselines(c, tuning, arms)
    measure = _parse_measure(c, doc.get("measure") or {})

    run_dir = Path("runs") / name
    storage_url = storage or doc.get("storage") or f"sqlite:///{run_dir / 'optuna.db'}"
    check_storage_url(storage_url, f"{path}: storage")
    output = (check_report_dir(doc["output"], f"{path}: output") if doc.get("output") is not None
              else REPORTS_DIR / name)
    artifacts = doc.get("artifacts")
    if artifacts is not None and (not isinstance(artifacts, str) or not artifacts.strip() or "\x00" in artifacts):
        raise c.error("artifacts",
                      f"must be a folder path (a shared folder every worker can write), got {artifacts!r}.")
    fingerprint_source = {k: v for k, v in doc.items() if k not in ("description", "storage", "output", "artifacts")}
    # threads change float results (training) and timing conditions: part of what a result means
    runtime_doc = {k: v for k, v in (doc.get("runtime") or {}).items() if k != "threads"}  # threads: resolved below
    fingerprint_source.pop("runtime", None)
    if runtime_doc:
        fingerprint_source["runtime"] = runtime_doc
    fingerprint_source["threads"] = {"train": runtime.threads or available_cores(), "timing": measure.threads}
    if plugins:  # the plugin code's identity (not where it is installed): a changed module changes the study
        fingerprint_source["plugins"] = [{k: v for k, v in p.items() if k != "file"} for p in plugins]
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
        notes=tuple(notes),
        artifacts=Path(artifacts) if artifacts is not None else None,
        plugins=plugins,
    )


def _check_plugins(c: _Checker, arms: Sequence[Arm], info: DatasetInfo | None) -> tuple[dict[str, Any], ...]:
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


def _parse_seeds(c: _Checker, value: Any) -> tuple[tuple[int, ...], SeedPlan | None]:
    """A list of distinct seeds, or {min, max, target_ci_pp} (seeds 0 .. max-1, added on demand)."""
    if isinstance(value, Mapping):
        m = c.mapping(value, "seeds", SEED_PLAN_KEYS, required=SEED_PLAN_KEYS)
        low = c.integer(m["min"], "seeds.min", 2, MAX_PLAN_SEEDS)
        high = c.integer(m["max"], "seeds.max", low, MAX_PLAN_SEEDS)
        target = c.number(m["target_ci_pp"], "seeds.target_ci_pp")
        if not target > 0:
            raise c.error("seeds.target_ci_pp", f"must be a finite number of percentage points > 0, got {target!r}.")
        return tuple(range(high)), SeedPlan(low, high, target)
    seeds = tuple(c.integer(s, f"seeds[{i}]", 0, MAX_SEED) for i, s in enumerate(c.seq(value, "seeds")))
    if len(set(seeds)) != len(seeds):
        raise c.error("seeds", f"seeds must be distinct, got {list(seeds)}.")
    return seeds, None


def _parse_grid(c: _Checker, value: Any) -> tuple[list[Arm], list[str]]:
    """The distinct arms of the grid, and notes on what collapsed (listed twice under two names)."""
    grid = c.mapping(value, "grid", GRID_KEYS, required=("backbones", "attention"))
    backbones = [c.nested(f"grid.backbones[{i}]", BackboneChoice.from_dict, entry)
                 for i, entry in enumerate(c.seq(grid["backbones"], "grid.backbones"))]

    attentions = [c.attention(a, f"grid.attention[{i}]")
                  for i, a in enumerate(c.seq(grid["attention"], "grid.attention"))]
    known = list(dict.fromkeys([*POSITIONS, *(p for bb in backbones for p in get_backbone(bb.name).positions)]))
    default = list(dict.fromkeys(get_backbone(bb.name).default_position for bb in backbones))  # each its own
    positions = [c.choice(p, f"grid.positions[{i}]", known)
                 for i, p in enumerate(c.seq(grid.get("positions", default), "grid.positions"))]
    reductions = [c.integer(r, f"grid.reductions[{i}]", 1)
                  for i, r in enumerate(c.seq(grid.get("reductions", [16]), "grid.reductions"))]
    stages: list[Any] = []
    for s in c.seq(grid.get("stages", ["all"]), "grid.stages"):
        if s != "all" and (isinstance(s, str) or not isinstance(s, Sequence)):
            s = [s]  # a bare integer means that one block
        stages.append(s)

    knobs_doc = grid.get("knobs") or {}
    knobs: dict[str, dict[str, list[Any]]] = {}
    for given, swept in c.mapping(knobs_doc, "grid.knobs", list(knobs_doc) if isinstance(knobs_doc, Mapping) else []
                                  ).items():
        attention = c.attention(given, f"grid.knobs.{given}")
        if attention not in attentions:
            raise c.error(f"grid.knobs.{given}", f"attention {given!r} is not in grid.attention.")
        declared = [k.name for k in declared_knobs(attention)]
        swept = c.mapping(swept, f"grid.knobs.{attention}", declared)
        knobs[attention] = {k: c.seq(v, f"grid.knobs.{attention}.{k}") for k, v in swept.items()}
    for bb in backbones:
        if not bb.bn and "after_bn" in positions:
            raise c.error("grid.positions", f"'after_bn' does not exist on {bb.label} (built without BatchNorm).")
    try:
        arms = enumerate_arms(backbones, attentions, positions, reductions, stages, knobs)
        notes = collapse_notes(backbones, attentions, positions, reductions, stages)
    except AblateError as err:
        raise c.error("grid", str(err)) from None
    if not arms:
        raise c.error("grid", "the grid is empty.")
    return arms, notes


def _check_tuned_baselines(c: _Checker, tuning: Tuning, arms: Sequence[Arm]) -> None:
    """Scope 'baseline' tunes each backbone's `none` arm and shares the result: every backbone needs one."""
    if not (tuning.enabled and tuning.scope == "baseline"):
        return
    with_baseline = {a.backbone.label for a in arms if a.is_baseline}
    missing = [label for label in dict.fromkeys(a.backbone.label for a in arms) if label not in with_baseline]
    if missing:
        raise c.error("tuning.scope", f"'baseline' tunes each backbone's 'none' arm, but {', '.join(missing)} has "
                                      "none; add 'none' to grid.attention or use scope per_arm or per_attention.")


def _parse_tuning(c: _Checker, value: Any) -> Tuning:
    """The tuning section; a section that is given is enabled unless it says otherwise."""
    t = c.mapping(value, "tuning", [f.name for f in dataclasses.fields(Tuning)])
    space = _parse_space(c, t.get("space") or {})
    return c.nested("tuning", Tuning.from_dict, {**t, "enabled": t.get("enabled", bool(t)), "space": space})


def _parse_space(c: _Checker, value: Any) -> tuple[Param, ...]:
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


def _parse_measure(c: _Checker, value: Any) -> Measure:
    return c.nested("measure", Measure.from_dict, value)
